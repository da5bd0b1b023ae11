"""Configure is validate -> probe -> apply: a failed probe changes nothing (docs/LIFECYCLE.md rule 1)."""

from __future__ import annotations

import pytest
from support import Function, http_sample, snapshot_tables
from testenv import TABLES

from kms_wrapping import KeyAccessRefused, KeyWrapper, ProviderUnavailable, WrapContext, WrappedKey


class BrokenProbe(KeyWrapper):
    """A provider whose key wraps but refuses to unwrap, as after a pulled decrypt grant."""

    provider = "global"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def _wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey:
        return WrappedKey(key_id="broken", ciphertext=b"x" * 48)

    def _unwrap(self, wrapped: WrappedKey, context: WrapContext) -> bytes:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (KeyAccessRefused("AccessDenied: not authorized to perform kms:Decrypt"), 422, "verification_failed"),
        (ProviderUnavailable("ThrottlingException after 3 attempts"), 503, "provider_unavailable"),
    ],
)
def test_failed_probe_leaves_every_row_as_it_was_but_the_verify_error(tenant_id, error, status, code):
    # Given a configured tenant with two versions
    configure, provision = Function("configure"), Function("provision")
    assert configure.http(http_sample("configure_put_global", tenant_id))[0] == 200
    assert provision.http(http_sample("provision_post", tenant_id))[0] == 201
    before = snapshot_tables(TABLES)

    # When a reconfiguration's probe fails
    configure.service.registry.register("global", lambda _config, _tenant: BrokenProbe(error))
    answer, body = configure.http(http_sample("configure_put_global", tenant_id))

    # Then the failure is reported and only last_verify_error changed
    assert (answer, body["error"]["code"]) == (status, code)
    after = snapshot_tables(TABLES)
    config_table = TABLES["TenantConfigTable"]
    for table in TABLES.values():
        if table != config_table:
            assert after[table] == before[table]
    row_before = next(i for i in before[config_table] if i["tenant_id"]["S"] == tenant_id)
    row_after = next(i for i in after[config_table] if i["tenant_id"]["S"] == tenant_id)
    assert str(error) in row_after.pop("last_verify_error")["S"]
    assert row_after == row_before
    assert [i for i in after[config_table] if i["tenant_id"]["S"] != tenant_id] == [
        i for i in before[config_table] if i["tenant_id"]["S"] != tenant_id
    ]

    # and the view shows the error while the tenant keeps its active version
    view = configure.http(http_sample("configure_get", tenant_id))[1]
    assert view["active_version"] == 2 and view["status"] == "active" and str(error) in view["last_verify_error"]


def test_failed_probe_on_a_new_tenant_stores_nothing(tenant_id):
    configure = Function("configure")
    configure.service.registry.register("global", lambda _config, _tenant: BrokenProbe(KeyAccessRefused("disabled")))
    before = snapshot_tables(TABLES)
    status, body = configure.http(http_sample("configure_put_global", tenant_id))
    assert (status, body["error"]["code"]) == (422, "verification_failed")
    assert snapshot_tables(TABLES) == before
    assert configure.http(http_sample("configure_get", tenant_id))[1]["status"] == "unconfigured"
