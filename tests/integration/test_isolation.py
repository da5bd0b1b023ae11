"""Who acts on which tenant: the tenant API Gateway routed, checked once, whatever the stage.

Every admin route is driven through the events API Gateway really sends: a named stage puts
its name in front of rawPath, pathParameters arrive percent-decoded once, and the route key
names the declared route. No caller without the right claims reaches another tenant, no
tenant id outside the pattern is stored, and every refusal leaves the tables as they were.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

import pytest
import testenv
from support import Function, api_event, http_sample, snapshot_tables

from tenant_kms.api import ADMIN_ROUTES, TENANT_ID_PATTERN
from tenant_kms.models import SWEEP_RUNS

TABLES = testenv.TABLES
STAGES = ["$default", "prod"]
ROUTES = [pytest.param(method, route, id=f"{method} {route}") for method, route in ADMIN_ROUTES]
CONFIGURE_BODY = {"provider": "global", "config": {}}


def percent_encoded(tenant_id: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in tenant_id)


def admin_of(tenant_id: str, scope: str = "tenant-kms/admin") -> dict:
    return {"sub": f"admin-of-{tenant_id}", "tenant_id": tenant_id, "scope": scope}


@functools.cache
def serving(method: str, route: str) -> Function:
    """One warm instance per function, as Lambda keeps one between requests."""
    return Function.serving(method, route)


def call(method: str, route: str, segment: str, claims: dict, *, stage: str, function: Function | None = None):
    """One request, as API Gateway would hand it over; the caller's login is fresh."""
    function = function or serving(method, route)
    claims = {**claims, "auth_time": int(function.service.clock())}
    body = CONFIGURE_BODY if (method, route) == ("PUT", "/tenants/{tenant_id}/kms") else None
    return function.http(api_event(method, route, segment, stage=stage, claims=claims, body=body))


def stored_tenant_ids() -> set[str]:
    """The tenant of every stored item (a partition such as ``<tenant>#external-id`` names one);
    the sweeps' positions sit under a partition of their own, which names no tenant."""
    return {
        item["tenant_id"]["S"].split("#", 1)[0]
        for items in snapshot_tables(TABLES).values()
        for item in items
        if "tenant_id" in item and "S" in item["tenant_id"] and item["tenant_id"]["S"] != SWEEP_RUNS
    }


def items_of(tenant_id: str) -> list[dict]:
    return [
        item
        for items in snapshot_tables(TABLES).values()
        for item in items
        if item.get("tenant_id") == {"S": tenant_id}
    ]


@pytest.fixture
def victim(tenant_id) -> str:
    """A configured tenant with a retired version 1 and an active version 2."""
    assert serving("PUT", "/tenants/{tenant_id}/kms").http(http_sample("configure_put_global", tenant_id))[0] == 200
    assert serving("POST", "/tenants/{tenant_id}/keys").http(http_sample("provision_post", tenant_id))[0] == 201
    return tenant_id


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(("method", "route"), ROUTES)
@pytest.mark.parametrize("encode", [False, True], ids=["plain", "percent-encoded"])
@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(lambda victim: admin_of("mallory-co"), id="admin-of-another-tenant"),
        pytest.param(lambda victim: admin_of(victim, scope="openid profile"), id="own-tenant-without-admin-scope"),
        pytest.param(lambda victim: {"sub": "bob", "scope": "tenant-kms/admin"}, id="admin-scope-without-tenant"),
    ],
)
def test_no_caller_without_the_right_claims_reaches_another_tenant(victim, stage, method, route, encode, claims):
    before = snapshot_tables(TABLES)
    segment = percent_encoded(victim) if encode else victim
    status, body = call(method, route, segment, claims(victim), stage=stage)
    assert (status, body["error"]["code"]) == (403, "forbidden"), body
    assert snapshot_tables(TABLES) == before


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_a_percent_encoded_tenant_is_the_tenant_it_decodes_to(tenant_id, stage, method, route):
    """`/tenants/%61cme/...` is acme's route: acme's admin acts on acme, and on nothing else."""
    configure = serving("GET", "/tenants/{tenant_id}/kms")
    assert (
        call("PUT", "/tenants/{tenant_id}/kms", percent_encoded(tenant_id), admin_of(tenant_id), stage=stage)[0] == 200
    )
    status, body = call(method, route, percent_encoded(tenant_id), admin_of(tenant_id), stage=stage)
    if route.endswith("/{job_id}"):  # served for the decoded tenant, which has no such job
        assert (status, body["error"]["message"]) == (404, f"tenant {tenant_id} has no rewrap job {'0' * 32}")
    else:
        assert status < 400 or status == 409, (method, route, status)  # 409: the active version stays
    assert all(re.match(TENANT_ID_PATTERN, stored) for stored in stored_tenant_ids())
    assert not any("%" in stored for stored in stored_tenant_ids())
    if method != "DELETE" or route != "/tenants/{tenant_id}":
        assert configure.http(http_sample("configure_get", tenant_id))[1]["active_version"] is not None


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(("method", "route"), ROUTES)
@pytest.mark.parametrize(
    "segment",
    [
        pytest.param(lambda t: percent_encoded(percent_encoded(t)), id="double-encoded"),
        pytest.param(lambda t: "%25" + t, id="encoded-percent"),
        pytest.param(lambda t: t + "%2F..", id="encoded-slash"),
        pytest.param(lambda t: "." + t, id="leading-dot"),
        pytest.param(lambda t: t + "%20", id="trailing-space"),
        pytest.param(lambda t: "x" * 65, id="too-long"),
    ],
)
def test_a_tenant_id_outside_the_pattern_is_400_and_changes_nothing(tenant_id, stage, method, route, segment):
    """The caller holds the claims of the very string the path decodes to: still refused."""
    raw = segment(tenant_id)
    before = snapshot_tables(TABLES)
    status, body = call(method, route, raw, admin_of(unquote(raw)), stage=stage)
    assert (status, body["error"]["code"]) == (400, "invalid_request"), body
    assert snapshot_tables(TABLES) == before
    assert all(re.match(TENANT_ID_PATTERN, stored) for stored in stored_tenant_ids())


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_a_tenant_route_reached_without_a_routed_tenant_never_runs(victim, stage, method, route):
    """API Gateway sends pathParameters with every declared route; an event for a tenant path
    without them (the $default route, a route key that is not this route) is not served."""
    function = serving(method, route)
    operator = {"sub": "ops", "scope": "tenant-kms/operator", "auth_time": int(function.service.clock())}
    body = CONFIGURE_BODY if method == "PUT" else None
    before = snapshot_tables(TABLES)

    unrouted = api_event(method, route, victim, stage=stage, claims=operator, body=body)
    unrouted.pop("pathParameters")
    unrouted["routeKey"] = unrouted["requestContext"]["routeKey"] = "$default"
    status, answer = function.http(unrouted)
    assert (status, answer["error"]["code"]) == (404, "not_found"), answer

    elsewhere = api_event(method, route, victim, stage=stage, claims=operator, body=body)
    elsewhere["routeKey"] = elsewhere["requestContext"]["routeKey"] = "GET /tenants/{tenant_id}/kms"
    if (method, route) != ("GET", "/tenants/{tenant_id}/kms"):
        status, answer = function.http(elsewhere)
        assert (status, answer["error"]["code"]) == (404, "not_found"), answer
    assert snapshot_tables(TABLES) == before


@pytest.mark.parametrize("stage", STAGES)
def test_the_routed_tenant_is_acted_on_whatever_the_raw_path_says(victim, stage):
    """Only pathParameters count: a rawPath naming another tenant changes nothing about whom
    the request acts on."""
    own = f"{victim}-own"
    event = api_event("PUT", "/tenants/{tenant_id}/kms", own, stage=stage, claims=admin_of(own), body=CONFIGURE_BODY)
    event["rawPath"] = event["requestContext"]["http"]["path"] = event["rawPath"].replace(own, victim)
    before = items_of(victim)
    event["requestContext"]["authorizer"]["jwt"]["claims"]["auth_time"] = int(
        serving("PUT", "/tenants/{tenant_id}/kms").service.clock()
    )
    status, view = serving("PUT", "/tenants/{tenant_id}/kms").http(event)
    assert (status, view["tenant_id"]) == (200, own)
    assert items_of(victim) == before
