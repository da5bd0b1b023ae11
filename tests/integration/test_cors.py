"""A browser admin UI on an origin AdminUiOrigins names can call the admin API: its preflight
never meets the JWT authorizer, and answers carry the CORS headers API Gateway adds. Through
the in-process gateway, which applies AdminApi's CorsConfiguration from template.yaml."""

from __future__ import annotations

import json

import pytest
from local_gateway import Gateway

UI = "https://admin.example.net"
ADMIN = json.dumps({"sub": "alice", "tenant_id": "acme", "scope": "tenant-kms/admin"})
PREFLIGHT = {"Origin": UI, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization"}


@pytest.fixture(scope="module")
def gateways() -> dict[str, Gateway]:
    return {"allowed": Gateway(admin_ui_origins=f"{UI},http://localhost:5173"), "none": Gateway()}


def test_a_preflight_from_an_allowed_origin_is_answered_without_a_token(gateways):
    status, headers, body = gateways["allowed"].handle_http("OPTIONS", "/tenants/acme/kms", PREFLIGHT, b"")
    assert (status, body) == (204, b"")
    assert headers["Access-Control-Allow-Origin"] == UI
    assert set(headers["Access-Control-Allow-Methods"].split(",")) == {"GET", "PUT", "POST", "DELETE"}
    allowed_headers = set(headers["Access-Control-Allow-Headers"].split(","))
    assert {"authorization", "content-type", "idempotency-key"} <= allowed_headers


def test_an_answer_to_an_allowed_origin_names_it_and_exposes_what_the_ui_reads(gateways):
    status, headers, _ = gateways["allowed"].handle_http(
        "GET", "/tenants/acme/kms", {"Origin": UI, "X-Local-Claims": ADMIN}, b""
    )
    assert status == 200 and headers["Access-Control-Allow-Origin"] == UI
    assert {"location", "retry-after", "www-authenticate"} <= set(headers["Access-Control-Expose-Headers"].split(","))
    # The authorizer's refusal carries them too, so the UI can read it.
    status, headers, _ = gateways["allowed"].handle_http("GET", "/tenants/acme/kms", {"Origin": UI}, b"")
    assert (status, headers["Access-Control-Allow-Origin"]) == (401, UI)


@pytest.mark.parametrize("gateway", ["allowed", "none"])
def test_another_origin_gets_no_cors_headers_and_the_preflight_is_still_not_a_401(gateways, gateway):
    other = {**PREFLIGHT, "Origin": "https://evil.example"} if gateway == "allowed" else PREFLIGHT
    status, headers, _ = gateways[gateway].handle_http("OPTIONS", "/tenants/acme/keys/3", other, b"")
    assert status == 204
    assert not [name for name in headers if name.lower().startswith("access-control-")]
