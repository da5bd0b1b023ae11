"""Sealed means sealed: while a tenant is sealed no version of its key is used, and only the
active version unwrapping again lifts the seal (the unseal route, configure, the re-poll).

A provider refusal is made real by moving a wrapped key to another version's row: the
global wrap binds tenant and version, so the moved key is refused as a wrong key would be.
"""

from __future__ import annotations

import json

import boto3
from support import (
    Function,
    b64,
    http_sample,
    invoke_sample,
    read_record,
    sample,
    snapshot_tables,
    step_up,
    structured_logs,
)
from testenv import TABLES

from tenant_kms.sweeps import REPOLL, Sweeps


def version_row(tenant_id: str, version: int) -> dict:
    key = {"tenant_id": {"S": tenant_id}, "version": {"N": str(version)}}
    return boto3.client("dynamodb").get_item(TableName=TABLES["KeyVersionTable"], Key=key, ConsistentRead=True)["Item"]


def put_version_row(row: dict) -> None:
    boto3.client("dynamodb").put_item(TableName=TABLES["KeyVersionTable"], Item=row)


def repoll(queues) -> dict:
    """The scheduled re-poll through its queue, with the deployed timeout: other tests' sealed
    tenants share the tables. The sweep's status afterwards."""
    return queues.sweep("verify", sample("verify_repoll_sealed"), timeout_ms=300_000)


def repolled(tenant_id: str) -> str | None:
    """What the last re-poll found for the tenant, or None if it was not visited."""
    visit = Sweeps.visit_of(REPOLL, tenant_id)
    return visit and visit["outcome"]


def view(tenant_id: str) -> dict:
    return Function("configure").http(http_sample("configure_get", tenant_id))[1]


def unseal(tenant_id: str, function: Function | None = None) -> tuple[int, dict]:
    return (function or Function("verify")).http(step_up(http_sample("verify_unseal", tenant_id)))


def two_versions_with_records(tenant_id: str, data: Function) -> dict:
    """Global v1 (retired, records a and b) and global v2 (active, record c)."""
    assert Function("configure").http(step_up(http_sample("configure_put_global", tenant_id)))[0] == 200
    for name in ("a", "b"):
        put = data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(name.encode())))
        assert put["version"] == 1
    assert Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[0] == 201
    assert data(invoke_sample("tenant_data_put", tenant_id, name="c", value_b64=b64(b"c")))["version"] == 2
    return version_row(tenant_id, 2)


def break_active_version(tenant_id: str) -> dict:
    """v2's row now holds v1's wrapped key: the provider refuses it. Returns the intact row."""
    intact = version_row(tenant_id, 2)
    put_version_row({**intact, "wrapped_key": version_row(tenant_id, 1)["wrapped_key"]})
    return intact


def sealed_by_the_active_version(tenant_id: str) -> tuple[Function, dict]:
    data = Function("tenant_data")
    two_versions_with_records(tenant_id, data)
    intact = break_active_version(tenant_id)
    assert read_record(Function("tenant_data"), tenant_id, "c") == "sealed"
    assert view(tenant_id)["status"] == "sealed"
    return data, intact


def test_while_sealed_no_version_answers_and_reading_an_older_one_keeps_the_seal(tenant_id):
    # Given a tenant sealed by its active version, with an instance that still caches v1
    data, _ = sealed_by_the_active_version(tenant_id)
    unwrap = Function("unwrap")
    before = snapshot_tables(TABLES)

    # When anything asks for a key of any version
    answers = [
        read_record(data, tenant_id, "a"),  # v1, cached in this instance
        read_record(Function("tenant_data"), tenant_id, "b"),  # v1, cold instance
        read_record(data, tenant_id, "c"),
        unwrap(invoke_sample("unwrap_version", tenant_id, version=1))["error"]["code"],
        unwrap(invoke_sample("unwrap", tenant_id))["error"]["code"],
        data(invoke_sample("tenant_data_put", tenant_id, name="d", value_b64=b64(b"d")))["error"]["code"],
        data(invoke_sample("tenant_data_put", tenant_id, name="a", value_b64=b64(b"a2")))["error"]["code"],
        Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[1]["error"]["code"],
        Function("rewrap").http(http_sample("rewrap_post", tenant_id))[1]["error"]["code"],
    ]

    # Then every one is refused as sealed, the seal holds and nothing changed
    assert answers == ["sealed"] * len(answers)
    assert view(tenant_id)["status"] == "sealed"
    assert snapshot_tables(TABLES) == before

    # And deleting a record needs no key, so it still works
    assert data(invoke_sample("tenant_data_delete", tenant_id, name="a")) == {"name": "a", "deleted": True}
    versions = Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]
    assert [v["records"] for v in versions] == [1, 1]


def test_unseal_lifts_the_seal_only_when_the_active_version_unwraps(tenant_id):
    # Given a tenant sealed by its active version; its older version is intact
    _, intact = sealed_by_the_active_version(tenant_id)
    before = snapshot_tables(TABLES)

    # While the active version is refused, unsealing is refused and changes nothing
    with structured_logs() as logs:
        status, body = unseal(tenant_id)
    assert (status, body["error"]["code"]) == (422, "verification_failed")
    assert "version 2" in body["error"]["message"]
    assert snapshot_tables(TABLES) == before
    assert '"action":"unseal"' in logs.getvalue() and '"outcome":"verification_failed"' in logs.getvalue()

    # Once it unwraps again, the tenant is active and every version's records open
    put_version_row(intact)
    with structured_logs() as logs:
        status, body = unseal(tenant_id)
    assert status == 200, body
    assert (body["status"], body["sealed_reason"], body["active_version"]) == ("active", None, 2)
    assert '"action":"unseal"' in logs.getvalue() and '"actor":"alice@acme.example"' in logs.getvalue()
    data = Function("tenant_data")
    assert [read_record(data, tenant_id, n) for n in "abc"] == [(b"a", 1), (b"b", 1), (b"c", 2)]

    # A tenant that is not sealed has nothing to unseal
    status, body = unseal(tenant_id)
    assert (status, body["error"]["code"]) == (409, "conflict")
    status, body = unseal(f"{tenant_id}-nobody")
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_the_scheduled_repoll_unseals_only_tenants_whose_active_version_unwraps(tenant_id, queues, capsys):
    # Given two sealed tenants, of which only one has its active version back, and an active one
    fixed, still_refused, untouched = tenant_id, f"{tenant_id}-refused", f"{tenant_id}-active"
    _, intact = sealed_by_the_active_version(fixed)
    sealed_by_the_active_version(still_refused)
    assert Function("configure").http(step_up(http_sample("configure_put_global", untouched)))[0] == 200
    put_version_row(intact)
    capsys.readouterr()

    # When the re-poll runs with the input its schedule sends, and its queue's units are visited
    with structured_logs() as logs:
        summary = repoll(queues)

    # Then the fixed tenant is active again, the refused one stays sealed, the active one is not probed
    assert repolled(fixed) == "active" and view(fixed)["status"] == "active"
    assert repolled(still_refused) == "sealed" and view(still_refused)["status"] == "sealed"
    assert "still refuses version 2" in logs.getvalue()
    # (other tests' sealed tenants share the tables: only this test's tenants are judged)
    assert repolled(untouched) is None and summary["finished"]
    assert '"action":"unseal","actor":"schedule"' in logs.getvalue()
    # One TenantsUnsealed per tenant the run unsealed (another test's tenant may be among them)
    unsealed = summary["totals"]["active"]
    assert _metric_values(capsys.readouterr().out, "TenantsUnsealed") == [1.0] * unsealed
    assert read_record(Function("tenant_data"), fixed, "a") == (b"a", 1)


def test_a_successful_configure_unseals(tenant_id):
    # Given a sealed tenant
    sealed_by_the_active_version(tenant_id)

    # When its admin configures a wrapping key that works (here: global again, a fresh version)
    with structured_logs() as logs:
        status, body = Function("configure").http(step_up(http_sample("configure_put_global", tenant_id)))

    # Then the new version is active, the seal is lifted and that is audited
    assert status == 200, body
    assert (body["status"], body["active_version"], body["sealed_reason"]) == ("active", 3, None)
    assert '"action":"unseal","actor":"alice@acme.example"' in logs.getvalue()
    data = Function("tenant_data")
    assert read_record(data, tenant_id, "a") == (b"a", 1)
    assert data(invoke_sample("tenant_data_put", tenant_id, name="d", value_b64=b64(b"d")))["version"] == 3


def _metric_values(output: str, name: str) -> list[float]:
    """The values of one metric in the EMF lines a run printed."""
    values: list[float] = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            value = json.loads(line).get(name)
            values += value if isinstance(value, list) else [] if value is None else [value]
    return values
