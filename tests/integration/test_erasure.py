"""Erasing a tenant destroys its wrapped keys: its data is unreadable by anyone (docs/LIFECYCLE.md rule 8). The
route answers once the keys are gone; a purge job deletes the records and the rest."""

from __future__ import annotations

from support import (
    Function,
    b64,
    http_sample,
    invoke_sample,
    job_unit,
    partition_items,
    purge_job,
    run_purge,
    snapshot_tables,
)
from testenv import TABLES, TENANT_TABLES


def tenant_items(tenant_id: str) -> dict[str, list]:
    return {table: partition_items(name, tenant_id) for table, name in TENANT_TABLES.items()}


def test_erased_tenant_has_no_keys_left_and_every_read_is_not_found(tenant_id):
    # Given a tenant with records under two versions, and warm caches in long-lived instances
    neighbour = f"{tenant_id}-n"
    for tenant in (tenant_id, neighbour):
        assert Function("configure").http(http_sample("configure_put_global", tenant))[0] == 200
    data, unwrap = Function("tenant_data"), Function("unwrap")
    assert data(invoke_sample("tenant_data_put", tenant_id, name="a", value_b64=b64(b"a")))["version"] == 1
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    assert data(invoke_sample("tenant_data_put", tenant_id, name="b", value_b64=b64(b"b")))["version"] == 2
    assert data(invoke_sample("tenant_data_put", neighbour, name="a", value_b64=b64(b"n")))["version"] == 1
    assert "key_b64" in unwrap(invoke_sample("unwrap", tenant_id))
    assert data(invoke_sample("tenant_data_get", tenant_id, name="a"))["value_b64"] == b64(b"a")

    # When the tenant is erased
    assert Function("erase").http(http_sample("erase_delete", tenant_id)) == (204, None)

    # Then no wrapped key of it is left, and until its records are purged it reads as erasing
    left = tenant_items(tenant_id)
    assert left["KeyVersionTable"] == [] and len(left["TenantDataTable"]) == 2
    assert Function("configure").http(http_sample("configure_get", tenant_id))[1]["status"] == "erasing"
    for answer in (
        unwrap(invoke_sample("unwrap", tenant_id)),
        unwrap(invoke_sample("unwrap_version", tenant_id, version=1)),
        data(invoke_sample("tenant_data_get", tenant_id, name="a")),
        data(invoke_sample("tenant_data_put", tenant_id, name="c", value_b64=b64(b"c"))),
    ):
        assert answer["error"]["code"] == "conflict" and "being erased" in answer["error"]["message"]

    # When its purge job runs to the end
    assert run_purge(tenant_id)["status"] == "succeeded"

    # Then no row of it remains in any table
    assert tenant_items(tenant_id) == {table: [] for table in TENANT_TABLES}
    # and even the warm instances answer not_found, from cache or not
    assert unwrap(invoke_sample("unwrap", tenant_id))["error"]["code"] == "not_found"
    assert unwrap(invoke_sample("unwrap_version", tenant_id, version=1))["error"]["code"] == "not_found"
    for name in ("a", "b"):
        assert data(invoke_sample("tenant_data_get", tenant_id, name=name))["error"]["code"] == "not_found"
    assert data(invoke_sample("tenant_data_put", tenant_id, name="c", value_b64=b64(b"c")))["error"]["code"] == (
        "not_found"
    )
    view = Function("configure").http(http_sample("configure_get", tenant_id))[1]
    assert view["status"] == "unconfigured"

    # The neighbour is untouched; a second erase finds nothing
    assert data(invoke_sample("tenant_data_get", neighbour, name="a"))["value_b64"] == b64(b"n")
    before = snapshot_tables(TABLES)
    status, body = Function("erase").http(http_sample("erase_delete", tenant_id))
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert snapshot_tables(TABLES) == before


def test_a_tenant_id_reused_after_erasure_never_sees_the_old_key(tenant_id):
    unwrap = Function("unwrap")
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    old_key = unwrap(invoke_sample("unwrap", tenant_id))["key_b64"]
    assert Function("erase").http(http_sample("erase_delete", tenant_id))[0] == 204
    status, body = Function("configure").http(http_sample("configure_put_global", tenant_id))
    assert (status, body["error"]["code"]) == (409, "conflict")  # not before the purge finished
    run_purge(tenant_id)
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    new = unwrap(invoke_sample("unwrap", tenant_id))
    assert new["version"] == 1 and new["key_b64"] != old_key


def test_a_record_write_racing_the_erasure_leaves_nothing_behind(tenant_id):
    # Given a caller's write that read the tenant's active version before the erasure began
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    data, erase = Function("tenant_data"), Function("erase")
    real_write = data.module.records._write_record
    erased = []

    def erase_lands_first(*args, **kwargs):
        if not erased:
            erased.append(erase.http(http_sample("erase_delete", tenant_id)))
        return real_write(*args, **kwargs)

    data.module.records._write_record = erase_lands_first

    # When the erasure completes between that read and the write
    answer = data(invoke_sample("tenant_data_put", tenant_id, name="late", value_b64=b64(b"late")))

    # Then the write is refused (no key version to seal under), and once purged nothing of the tenant remains
    assert erased == [(204, None)]
    assert answer["error"]["code"] == "conflict" and "being erased" in answer["error"]["message"]
    assert tenant_items(tenant_id)["TenantDataTable"] == []
    run_purge(tenant_id)
    assert tenant_items(tenant_id) == {table: [] for table in TENANT_TABLES}


def test_erasing_again_while_the_purge_runs_answers_204_and_keeps_the_one_purge(tenant_id, monkeypatch):
    # Given an erased tenant whose purge has done one batch of two
    monkeypatch.setenv("REWRAP_BATCH_RECORDS", "2")
    data = Function("tenant_data")
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    for name in "abc":
        assert data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(b"v")))["version"] == 1
    erase, rewrap = Function("erase"), Function("rewrap")
    assert erase.http(http_sample("erase_delete", tenant_id)) == (204, None)
    job = purge_job(tenant_id)
    assert rewrap(job_unit(job))["status"] == "running"
    assert [r["name"]["S"] for r in tenant_items(tenant_id)["TenantDataTable"]] == ["c"]

    # When it is erased again
    assert erase.http(http_sample("erase_delete", tenant_id)) == (204, None)

    # Then the same purge goes on from where it stopped and finishes the erasure
    assert purge_job(tenant_id) == job
    assert run_purge(tenant_id, rewrap)["status"] == "succeeded"
    assert tenant_items(tenant_id) == {table: [] for table in TENANT_TABLES}
    assert purge_job(tenant_id) is None
