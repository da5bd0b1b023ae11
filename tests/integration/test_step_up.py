"""Step-up: the routes that change what protects a tenant's keys need a recent login (RFC 9470).

Each function runs on an injected clock, and the caller's ``auth_time`` is set against it.
"""

from __future__ import annotations

import pytest
import testenv
from support import Clock, Function, http_sample, snapshot_tables

from tenant_kms.api import STEP_UP_ROUTES

TABLES = testenv.TABLES
# route key: (function, sample event, maximum login age, status once the login is fresh enough)
STEP_UP = {
    "PUT /tenants/{tenant_id}/kms": ("configure", "configure_put_global", 300, 200),
    "POST /tenants/{tenant_id}/keys": ("provision", "provision_post", 300, 201),
    "DELETE /tenants/{tenant_id}/keys/{version}": ("provision", "provision_destroy", 300, 204),
    "DELETE /tenants/{tenant_id}": ("erase", "erase_delete", 300, 204),
    "POST /tenants/{tenant_id}/kms/unseal": ("verify", "verify_unseal", 120, 409),  # 409: not sealed
}
ROUTES = [pytest.param(route, id=route) for route in STEP_UP]
READ_ONLY = [
    ("configure", "configure_get", 200),
    ("provision", "provision_list", 200),
    ("verify", "verify_post", 200),
    ("rewrap", "rewrap_post", 202),
]


def test_every_step_up_route_is_covered():
    assert set(STEP_UP) == set(STEP_UP_ROUTES)


@pytest.fixture
def tenant(tenant_id) -> str:
    """Configured, then rotated: version 1 retired and unreferenced, version 2 active."""
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    return tenant_id


def request(route: str, tenant_id: str, auth_time, clock: Clock) -> tuple[int, dict, dict]:
    name, event_name, _, _ = STEP_UP[route]
    function = Function(name)
    function.service.clock = clock
    event = http_sample(event_name, tenant_id, auth_time=auth_time, version=1 if "{version}" in route else None)
    response = function(event)
    return response["statusCode"], response.get("headers") or {}, response.get("body")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("age", [0, "max"], ids=["just-logged-in", "exactly-max-age"])
def test_a_fresh_login_is_served(tenant, route, age):
    clock = Clock()
    max_age, served = STEP_UP[route][2], STEP_UP[route][3]
    status, _, body = request(route, tenant, clock.now - (max_age if age == "max" else 0), clock)
    assert status == served, body


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "auth_time",
    [
        pytest.param(lambda now, max_age: now - max_age - 1, id="stale"),
        pytest.param(lambda now, max_age: now - 86400, id="yesterday"),
        pytest.param(lambda now, max_age: None, id="missing"),
        pytest.param(lambda now, max_age: now + 3600, id="in-the-future"),
        pytest.param(lambda now, max_age: "recently", id="not-a-number"),
        pytest.param(lambda now, max_age: True, id="boolean"),
        pytest.param(lambda now, max_age: "", id="empty"),
        pytest.param(lambda now, max_age: [now], id="list"),
    ],
)
def test_a_stale_missing_or_malformed_login_is_401_and_changes_nothing(tenant, route, auth_time):
    clock = Clock()
    max_age = STEP_UP[route][2]
    before = snapshot_tables(TABLES)
    status, headers, body = request(route, tenant, auth_time(clock.now, max_age), clock)
    assert status == 401, body
    assert '"code": "step_up_required"' in body
    assert headers["WWW-Authenticate"] == f'Bearer error="insufficient_user_authentication", max_age={max_age}'
    assert snapshot_tables(TABLES) == before


@pytest.mark.parametrize("route", ROUTES)
def test_auth_time_as_the_jwt_authorizer_passes_it_a_string_of_digits(tenant, route):
    clock = Clock()
    status, _, body = request(route, tenant, str(int(clock.now) - 10), clock)
    assert status == STEP_UP[route][3], body


def test_a_login_goes_stale_as_the_clock_moves(tenant):
    clock = Clock()
    login = clock.now
    assert request("POST /tenants/{tenant_id}/keys", tenant, login, clock)[0] == 201
    clock.advance(301)
    assert request("POST /tenants/{tenant_id}/keys", tenant, login, clock)[0] == 401


def test_unseal_asks_for_a_more_recent_login_than_the_other_routes(tenant):
    clock = Clock()
    two_minutes_and_a_bit = clock.now - 121
    assert request("POST /tenants/{tenant_id}/keys", tenant, two_minutes_and_a_bit, clock)[0] == 201
    assert request("POST /tenants/{tenant_id}/kms/unseal", tenant, two_minutes_and_a_bit, clock)[0] == 401


@pytest.mark.parametrize(("function", "event_name", "served"), READ_ONLY)
def test_other_routes_need_no_auth_time(tenant, function, event_name, served):
    status, body = Function(function).http(http_sample(event_name, tenant, auth_time=None))
    assert status == served, body


def test_a_refused_step_up_names_nothing_before_the_tenant_check(tenant):
    """Another tenant's admin learns 403, not whether the login was fresh enough."""
    clock = Clock()
    mallory = {"sub": "mallory", "tenant_id": "mallory-co", "scope": "tenant-kms/admin"}
    function = Function("provision")
    function.service.clock = clock
    event = http_sample("provision_post", tenant, claims=mallory, auth_time=None)
    assert function.http(event)[1]["error"]["code"] == "forbidden"
