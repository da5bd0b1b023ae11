"""Destroying a retired version is cryptographic erasure: checked on the table item itself,
and refused while any record still needs the version."""

from __future__ import annotations

import boto3
from support import Function, b64, configured_global, http_sample, invoke_sample, read_record, snapshot_tables, step_up
from testenv import TABLES


def version_item(tenant_id: str, version: int) -> dict:
    return boto3.client("dynamodb").get_item(
        TableName=TABLES["KeyVersionTable"],
        Key={"tenant_id": {"S": tenant_id}, "version": {"N": str(version)}},
        ConsistentRead=True,
    )["Item"]


def destroy(tenant_id: str, version: int) -> tuple[int, dict | None]:
    return Function("provision").http(step_up(http_sample("provision_destroy", tenant_id, version=version)))


def test_destroy_deletes_the_wrapped_key_from_the_version_item(tenant_id):
    """Catches a destroy that marks the version destroyed but leaves its wrapped key in the
    table (no erasure: anyone holding the master key could still unwrap it)."""
    configured_global(tenant_id)
    assert Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[0] == 201
    assert "wrapped_key" in version_item(tenant_id, 1) and "key_id" in version_item(tenant_id, 1)

    assert destroy(tenant_id, 1) == (204, None)

    item = version_item(tenant_id, 1)
    assert item["status"] == {"S": "destroyed"} and "destroyed_at" in item
    assert "wrapped_key" not in item, "the wrapped key outlived its destruction"
    assert "wrapped_key" in version_item(tenant_id, 2)


def test_a_retired_version_still_sealing_records_is_not_destroyed(tenant_id):
    """Catches a destroy whose condition no longer requires ``records == 0``: the version's
    wrapped key would be deleted while records sealed under it become unreadable for good."""
    configured_global(tenant_id)
    put = invoke_sample("tenant_data_put", tenant_id, name="kept", value_b64=b64(b"still needs version 1"))
    assert Function("tenant_data")(put)["version"] == 1
    assert Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[0] == 201
    before = snapshot_tables(TABLES)

    status, body = destroy(tenant_id, 1)

    assert status == 409 and body["error"]["code"] == "conflict", body
    assert "1 records" in body["error"]["message"]
    assert snapshot_tables(TABLES) == before
    assert read_record(Function("tenant_data"), tenant_id, "kept") == (b"still needs version 1", 1)
