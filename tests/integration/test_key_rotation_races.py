"""Re-wrapping a key version races provision, destroy, erase, record writes and another
re-wrap: whichever lands between the re-wrap's read and its write wins, nothing is lost, and
a destroyed or erased version is never written back. Each interleaving is made exact by
running the competing operation from inside the re-wrap, just before its conditional write."""

from __future__ import annotations

import secrets

import pytest
from deployment import deploy_master_keys, own_tables
from support import (
    Function,
    b64,
    http_sample,
    invoke_sample,
    key_versions,
    read_record,
    rewrap_wrapping_keys,
    run_purge,
    run_rewrap,
)

from kms_wrapping.global_wrap import master_key_id
from tenant_kms.models import KeyVersion, TenantConfig, TenantRecord

K1, K2 = secrets.token_bytes(32), secrets.token_bytes(32)


@pytest.fixture
def rotated(monkeypatch):
    """A deployment of its own whose tenants were made under K1, now running on "K2,K1"."""
    own_tables(monkeypatch)
    deploy_master_keys(monkeypatch, K1)

    def after_rotation() -> None:
        deploy_master_keys(monkeypatch, K2, K1)

    return after_rotation


def tenant_with_records(tenant: str, retired: bool = True) -> dict[str, bytes]:
    assert Function("configure").http(http_sample("configure_put_global", tenant))[0] == 200
    values = {"a": secrets.token_bytes(16), "b": secrets.token_bytes(16)}
    data = Function("tenant_data")
    for name, value in values.items():
        assert data(invoke_sample("tenant_data_put", tenant, name=name, value_b64=b64(value)))["version"] == 1
    if retired:
        assert Function("provision").http(http_sample("provision_post", tenant))[0] == 201
    return values


def racing(rewrap: Function, competitor, *, on_version: int | None = None) -> list[int]:
    """Run ``competitor`` once, between the re-wrap's read of a version and its write."""
    real = rewrap.module.rotation._replace_wrapped_key
    raced: list[int] = []

    def write(row, new):
        if not raced and (on_version is None or row.version == on_version):
            raced.append(row.version)
            competitor(row)
        return real(row, new)

    rewrap.module.rotation._replace_wrapped_key = write
    return raced


def row(tenant: str, version: int) -> dict | None:
    try:
        return KeyVersion.get(tenant, version, consistent_read=True).attribute_values
    except KeyVersion.DoesNotExist:
        return None


def tmk(tenant: str, version: int) -> str:
    return Function("unwrap")(invoke_sample("unwrap_version", tenant, version=version))["key_b64"]


def test_a_provision_landing_mid_rewrap_keeps_one_active_version_and_every_key(rotated, tenant_id):
    values = tenant_with_records(tenant_id, retired=False)  # version 1 is active
    before = tmk(tenant_id, 1)
    rotated()
    rewrap = Function("rewrap")
    raced = racing(rewrap, lambda _row: Function("provision").http(http_sample("provision_post", tenant_id)))

    keys = rewrap_wrapping_keys(tenant_id, rewrap=rewrap)

    assert raced == [1] and keys == {"checked": 1, "rewrapped": 1}
    versions = {v: row(tenant_id, v) for v in (1, 2)}
    assert [versions[1]["status"], versions[2]["status"]] == ["retired", "active"]  # the provision's retire stands
    assert versions[1]["key_id"] == versions[2]["key_id"] == master_key_id(K2)
    assert TenantConfig.get(tenant_id, consistent_read=True).active_version == 2
    assert tmk(tenant_id, 1) == before  # the same TMK, re-wrapped
    data = Function("tenant_data")
    assert {n: read_record(data, tenant_id, n) for n in values} == {n: (v, 1) for n, v in values.items()}


def test_a_destroy_landing_mid_rewrap_is_never_undone(rotated, tenant_id):
    tenant_with_records(tenant_id)
    assert run_rewrap(tenant_id)["status"] == "succeeded"  # version 1 holds no record now
    rotated()
    rewrap = Function("rewrap")
    destroy = Function("provision")
    raced = racing(
        rewrap,
        lambda _row: destroy.http(http_sample("provision_destroy", tenant_id, version=1)),
        on_version=1,
    )

    keys = rewrap_wrapping_keys(tenant_id, rewrap=rewrap)

    assert raced == [1] and keys == {"checked": 2, "rewrapped": 1, "skipped": 1}
    destroyed = row(tenant_id, 1)
    assert destroyed["status"] == "destroyed" and "wrapped_key" not in destroyed and "rewrapped_at" not in destroyed
    assert Function("unwrap")(invoke_sample("unwrap_version", tenant_id, version=1))["error"]["code"] == "not_found"
    assert row(tenant_id, 2)["key_id"] == master_key_id(K2)


def test_an_erase_landing_mid_rewrap_leaves_nothing_behind(rotated, tenant_id):
    tenant_with_records(tenant_id)
    rotated()
    rewrap = Function("rewrap")
    erase = Function("erase")
    raced = racing(rewrap, lambda _row: erase.http(http_sample("erase_delete", tenant_id)))

    keys = rewrap_wrapping_keys(tenant_id, rewrap=rewrap)

    assert raced and keys == {"checked": 2, "skipped": 2}
    assert list(KeyVersion.query(tenant_id, consistent_read=True)) == []
    assert run_purge(tenant_id, rewrap)["status"] == "succeeded"  # the records go with the purge job
    assert list(TenantRecord.query(tenant_id, consistent_read=True)) == []
    assert Function("unwrap")(invoke_sample("unwrap", tenant_id))["error"]["code"] == "not_found"


def test_a_record_written_mid_rewrap_keeps_its_value_and_its_count(rotated, tenant_id):
    tenant_with_records(tenant_id, retired=False)
    rotated()
    rewrap = Function("rewrap")
    data = Function("tenant_data")
    raced = racing(
        rewrap, lambda _row: data(invoke_sample("tenant_data_put", tenant_id, name="c", value_b64=b64(b"written")))
    )

    rewrap_wrapping_keys(tenant_id, rewrap=rewrap)

    assert raced == [1]
    assert [v["records"] for v in key_versions(tenant_id)] == [3] and row(tenant_id, 1)["key_id"] == master_key_id(K2)
    assert read_record(Function("tenant_data"), tenant_id, "c") == (b"written", 1)


def test_two_rewraps_of_one_version_write_it_once(rotated, tenant_id):
    tenant_with_records(tenant_id, retired=False)
    before = tmk(tenant_id, 1)
    rotated()
    first, second = Function("rewrap"), Function("rewrap")
    answers = []
    racing(first, lambda _row: answers.append(rewrap_wrapping_keys(tenant_id, rewrap=second)))

    answers.append(rewrap_wrapping_keys(tenant_id, rewrap=first))

    assert answers == [{"checked": 1, "rewrapped": 1}, {"checked": 1, "skipped": 1}]
    version = row(tenant_id, 1)
    assert version["key_id"] == master_key_id(K2) and version["status"] == "active"
    assert tmk(tenant_id, 1) == before
