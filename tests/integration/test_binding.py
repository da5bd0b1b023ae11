"""Ciphertexts are bound to where they belong (docs/LIFECYCLE.md rule 4): moved anywhere else, they fail."""

from __future__ import annotations

import boto3
from support import Function, b64, http_sample, invoke_sample, step_up
from testenv import TABLES


def item(table: str, key: dict) -> dict:
    return boto3.client("dynamodb").get_item(TableName=TABLES[table], Key=key, ConsistentRead=True)["Item"]


def put(table: str, value: dict) -> None:
    boto3.client("dynamodb").put_item(TableName=TABLES[table], Item=value)


def configured(tenant_id: str, *records: str) -> None:
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    data = Function("tenant_data")
    for name in records:
        assert "version" in data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(name.encode())))


def test_record_ciphertext_moved_to_another_tenant_name_or_version_fails_to_open(tenant_id):
    other = f"{tenant_id}-other"
    configured(tenant_id, "alpha", "beta")
    configured(other, "alpha")
    data = Function("tenant_data")
    alpha = item("TenantDataTable", {"tenant_id": {"S": tenant_id}, "name": {"S": "alpha"}})

    # another tenant, same record name
    put("TenantDataTable", {**alpha, "tenant_id": {"S": other}})
    assert data(invoke_sample("tenant_data_get", other, name="alpha"))["error"]["code"] == "integrity_error"

    # same tenant, another record name
    put("TenantDataTable", {**alpha, "name": {"S": "beta"}})
    assert data(invoke_sample("tenant_data_get", tenant_id, name="beta"))["error"]["code"] == "integrity_error"

    # same tenant and name, claimed under another version
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    put("TenantDataTable", {**alpha, "version": {"N": "2"}})
    assert data(invoke_sample("tenant_data_get", tenant_id, name="alpha"))["error"]["code"] == "integrity_error"

    # the untouched original still opens
    put("TenantDataTable", alpha)
    assert data(invoke_sample("tenant_data_get", tenant_id, name="alpha"))["value_b64"] == b64(b"alpha")


def test_wrapped_key_moved_to_another_tenant_or_version_fails_to_unwrap(tenant_id):
    other = f"{tenant_id}-other"
    configured(tenant_id)
    configured(other)
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    v1 = item("KeyVersionTable", {"tenant_id": {"S": tenant_id}, "version": {"N": "1"}})
    genuine = Function("unwrap")(invoke_sample("unwrap_version", tenant_id, version=1))["key_b64"]

    # another tenant's version 1 row now holds this tenant's wrapped key
    target = item("KeyVersionTable", {"tenant_id": {"S": other}, "version": {"N": "1"}})
    put("KeyVersionTable", {**target, "wrapped_key": v1["wrapped_key"]})
    answer = Function("unwrap")(invoke_sample("unwrap_version", other, version=1))
    assert answer["error"]["code"] == "sealed" and genuine not in str(answer)

    # this tenant's version 2 row now holds its version 1 wrapped key
    v2 = item("KeyVersionTable", {"tenant_id": {"S": tenant_id}, "version": {"N": "2"}})
    put("KeyVersionTable", {**v2, "wrapped_key": v1["wrapped_key"]})
    answer = Function("unwrap")(invoke_sample("unwrap_version", tenant_id, version=2))
    assert answer["error"]["code"] == "sealed" and genuine not in str(answer)
    view = Function("configure").http(http_sample("configure_get", tenant_id))[1]
    assert view["status"] == "sealed" and "version 2" in view["sealed_reason"]

    # while sealed every key operation says so, on the intact version too; once the active
    # version is whole again, unsealing unwraps it and the keys answer again
    data = Function("tenant_data")
    assert data(invoke_sample("tenant_data_put", tenant_id, name="x", value_b64=b64(b"x")))["error"]["code"] == "sealed"
    assert Function("unwrap")(invoke_sample("unwrap_version", tenant_id, version=1))["error"]["code"] == "sealed"
    put("KeyVersionTable", v2)
    assert Function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))[1]["status"] == "active"
    assert Function("unwrap")(invoke_sample("unwrap_version", tenant_id, version=1))["key_b64"] == genuine
