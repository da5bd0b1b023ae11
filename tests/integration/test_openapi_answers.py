"""Every route docs/openapi.json documents, called through the function template.yaml routes it
to (DynamoDB Local behind): the status is one the document lists for that route, and the body
and headers are what it says for that status. One tenant's lifecycle, then the refusals."""

from __future__ import annotations

import json
import time
from typing import Any

from support import (
    Function,
    api_event,
    assert_documented,
    assert_schema_valid,
    b64,
    invoke_sample,
    openapi_document,
    run_job,
)

DOC = openapi_document()
ADMIN = {"sub": "alice", "scope": "tenant-kms/admin"}
_functions: dict[str, Function] = {}
called: set[str] = set()


def call(method: str, route: str, tenant_id: str, *, claims: Any = "admin", **changes: Any) -> tuple[int, dict, Any]:
    """Send the request; check the answer against the document; the status, headers and body."""
    if claims == "admin":
        claims = {**ADMIN, "tenant_id": tenant_id, "auth_time": int(time.time())}
    job_id = changes.pop("job_id", None)
    event = api_event(method, route, tenant_id, claims=claims, **changes)
    if job_id is not None:
        event["pathParameters"]["job_id"] = job_id
        event["rawPath"] = event["requestContext"]["http"]["path"] = event["rawPath"].replace("0" * 32, job_id)
    function = _functions.get(method + route) or _functions.setdefault(method + route, Function.serving(method, route))
    status, headers, body = assert_documented(event, function(event))
    operation = DOC["paths"][route][method.lower()]
    if "requestBody" in operation and event.get("body") and status < 400:
        assert_schema_valid(
            operation["requestBody"]["content"]["application/json"]["schema"], json.loads(event["body"])
        )
    called.add(f"{method} {route}")
    return status, headers, body


def test_every_documented_route_answers_as_documented_through_a_tenants_lifecycle(tenant_id):
    kms, keys = "/tenants/{tenant_id}/kms", "/tenants/{tenant_id}/keys"
    assert call("GET", kms, tenant_id)[2]["status"] == "unconfigured"
    assert call("POST", kms + "/verify", tenant_id)[0] == 404
    assert call("PUT", kms, tenant_id, body={"provider": "global", "config": {}})[0] == 200
    assert call("GET", kms, tenant_id)[2]["active_version"] == 1
    assert call("GET", kms + "/onboarding", tenant_id)[0] == 200
    assert call("POST", kms + "/verify", tenant_id)[2]["ok"] is True
    assert call("POST", kms + "/unseal", tenant_id)[0] == 409  # not sealed

    data = Function("tenant_data")
    assert data(invoke_sample("tenant_data_put", tenant_id, name="r", value_b64=b64(b"v")))["version"] == 1
    assert call("POST", keys, tenant_id)[2] == {"version": 2, "status": "active"}
    assert [v["status"] for v in call("GET", keys, tenant_id)[2]["versions"]] == ["retired", "active"]
    assert call("DELETE", keys + "/{version}", tenant_id, version=1)[0] == 409  # still seals a record

    rewrap = "/tenants/{tenant_id}/rewrap"
    status, headers, job = call("POST", rewrap, tenant_id)
    assert status == 202 and headers["Location"] == f"/tenants/{tenant_id}/rewrap/{job['job_id']}"
    run_job(_functions["POST" + rewrap], job)
    assert call("GET", rewrap + "/{job_id}", tenant_id, job_id=job["job_id"])[2]["status"] == "succeeded"
    assert call("GET", rewrap + "/{job_id}", tenant_id)[0] == 404
    assert call("DELETE", keys + "/{version}", tenant_id, version=1)[0] == 204
    assert call("DELETE", "/tenants/{tenant_id}", tenant_id)[0] == 204

    # The tests' deployment is no OIDC issuer (no FEDERATION_ISSUER_URL).
    assert call("GET", "/.well-known/openid-configuration", tenant_id, claims=None)[0] == 404
    assert call("GET", "/.well-known/jwks.json", tenant_id, claims=None)[0] == 404

    documented = {f"{m.upper()} {p}" for p, item in DOC["paths"].items() for m in item if m != "parameters"}
    assert documented <= called, f"not called: {sorted(documented - called)}"


def test_refusals_before_any_route_runs_answer_as_documented(tenant_id):
    kms = "/tenants/{tenant_id}/kms"
    assert call("GET", kms, tenant_id, claims=None)[2]["error"]["code"] == "unauthorized"
    assert call("GET", kms, tenant_id, claims={**ADMIN, "tenant_id": "other"})[0] == 403
    stale = {**ADMIN, "tenant_id": tenant_id, "auth_time": int(time.time()) - 3600}
    assert call("POST", "/tenants/{tenant_id}/keys", tenant_id, claims=stale)[2]["error"]["code"] == "step_up_required"
    assert call("PUT", kms, tenant_id, body={"provider": "customer_kms_aws", "config": {}})[0] == 400
    assert call("PUT", kms, tenant_id, body={"provider": "global", "config": {"x": "A" * 20_000}})[0] == 413
