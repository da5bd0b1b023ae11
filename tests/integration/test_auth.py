"""Every admin route requires claims; admins act on their own tenant, operators on any (docs/LIFECYCLE.md rule 10)."""

from __future__ import annotations

import pytest
from support import Function, http_sample

ROUTES = [
    ("configure", "configure_put_global"),
    ("configure", "configure_get"),
    ("verify", "verify_post"),
    ("provision", "provision_post"),
    ("provision", "provision_list"),
    ("provision", "provision_destroy"),
    ("rewrap", "rewrap_post"),
    ("erase", "erase_delete"),
]


@pytest.mark.parametrize(("function", "event"), ROUTES)
def test_no_claims_is_401(tenant_id, function, event):
    status, body = Function(function).http(http_sample(event, tenant_id, claims=None))
    assert (status, body["error"]["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(("function", "event"), ROUTES)
def test_admin_of_another_tenant_is_403(tenant_id, function, event):
    claims = {"sub": "mallory", "tenant_id": "someone-else", "scope": "tenant-kms/admin"}
    status, body = Function(function).http(http_sample(event, tenant_id, claims=claims))
    assert (status, body["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "bob", "tenant_id": "T", "scope": "openid profile"},  # own tenant, no admin scope
        {"sub": "bob", "scope": "tenant-kms/admin"},  # admin scope, no tenant
        {"sub": "bob", "tenant_id": "T", "scope": "tenant-kms/administrator"},  # near miss
    ],
)
def test_claims_without_the_right_scope_are_403(tenant_id, claims):
    claims = {k: (tenant_id if v == "T" else v) for k, v in claims.items()}
    status, body = Function("configure").http(http_sample("configure_put_global", tenant_id, claims=claims))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert Function("configure").http(http_sample("configure_get", tenant_id))[1]["status"] == "unconfigured"


def test_operator_scope_acts_on_any_tenant(tenant_id):
    operator = {"sub": "ops", "tenant_id": "platform", "scope": "openid tenant-kms/operator"}
    status, view = Function("configure").http(http_sample("configure_put_global", tenant_id, claims=operator))
    assert (status, view["tenant_id"], view["active_version"]) == (200, tenant_id, 1)
    status, created = Function("provision").http(http_sample("provision_post", tenant_id, claims=operator))
    assert (status, created["version"]) == (201, 2)


def test_admin_acts_on_own_tenant(tenant_id):
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
