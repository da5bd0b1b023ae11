"""The hot paths read the tables once: a warm unwrap reads the config row (which names the
active version), a record read or write reads the config row and the record in one batch.
They still see every seal, destroy and erase on their next call (the race and erasure tests
say so); here, the round trips themselves, counted on the wire, and config rows as a
release that did not keep the active version's name on them leaves them."""

from __future__ import annotations

import boto3
import pytest
from faults import DynamoDBFaultProxy
from support import Function, b64, http_sample, invoke_sample
from testenv import TABLES


@pytest.fixture(scope="module")
def wire(dynamodb_local):
    return DynamoDBFaultProxy(dynamodb_local.endpoint)


@pytest.fixture
def counted(wire, monkeypatch):
    """Functions created from here on reach DynamoDB through the counting proxy."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", wire.endpoint)
    wire.reset()
    yield wire
    wire.reset()


def config_row(tenant_id: str) -> dict:
    table, key = TABLES["TenantConfigTable"], {"tenant_id": {"S": tenant_id}}
    return boto3.client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]


def as_left_by_an_earlier_release(tenant_id: str, active_key: dict | None) -> None:
    """The config row as a release that does not keep the active version's name leaves it:
    none at all, or the name of the version active before its provision."""
    row = {name: value for name, value in config_row(tenant_id).items() if name != "active_key"}
    if active_key is not None:
        row["active_key"] = active_key
    boto3.client("dynamodb").put_item(TableName=TABLES["TenantConfigTable"], Item=row)


def test_warm_unwrap_and_record_reads_and_writes_take_one_round_trip_before_the_write(counted, tenant_id):
    # Given warm instances that have used the tenant's key once
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    unwrap, data = Function("unwrap"), Function("tenant_data")
    assert unwrap(invoke_sample("unwrap", tenant_id))["version"] == 1
    assert data(invoke_sample("tenant_data_put", tenant_id, name="a", value_b64=b64(b"a")))["version"] == 1

    # When each operation runs warm, Then it reads once
    counted.calls.clear()
    assert unwrap(invoke_sample("unwrap", tenant_id))["version"] == 1
    assert dict(counted.calls) == {"GetItem": 1}

    counted.calls.clear()
    assert data(invoke_sample("tenant_data_get", tenant_id, name="a"))["value_b64"] == b64(b"a")
    assert dict(counted.calls) == {"BatchGetItem": 1}

    counted.calls.clear()
    assert data(invoke_sample("tenant_data_put", tenant_id, name="a", value_b64=b64(b"b")))["version"] == 1
    assert data(invoke_sample("tenant_data_put", tenant_id, name="new", value_b64=b64(b"n")))["version"] == 1
    assert dict(counted.calls) == {"BatchGetItem": 2, "TransactWriteItems": 2}

    # and a version asked for by number comes with the config in the same batch
    counted.calls.clear()
    assert unwrap(invoke_sample("unwrap_version", tenant_id, version=1))["version"] == 1
    assert dict(counted.calls) == {"BatchGetItem": 1}


@pytest.mark.parametrize("left", ["none", "the version before"])
def test_a_config_row_an_earlier_release_provisioned_is_read_by_its_active_version(tenant_id, left):
    # Given warm instances holding version 1's key, and a config row whose active version 2
    # was made by a release that left the active version's name as it was (or none at all)
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    unwrap, data = Function("unwrap"), Function("tenant_data")
    first = unwrap(invoke_sample("unwrap", tenant_id))
    assert data(invoke_sample("tenant_data_put", tenant_id, name="a", value_b64=b64(b"a")))["version"] == 1
    named_before = config_row(tenant_id)["active_key"]
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    as_left_by_an_earlier_release(tenant_id, None if left == "none" else named_before)

    # When the warm instances use the tenant's key
    second = unwrap(invoke_sample("unwrap", tenant_id))
    put = data(invoke_sample("tenant_data_put", tenant_id, name="b", value_b64=b64(b"b")))

    # Then they use version 2, as the config row says, never the cached version 1
    assert (second["version"], put["version"]) == (2, 2) and second["key_b64"] != first["key_b64"]
    assert unwrap(invoke_sample("unwrap_version", tenant_id, version=1))["key_b64"] == first["key_b64"]
    for name, value, version in (("a", b"a", 1), ("b", b"b", 2)):
        answer = data(invoke_sample("tenant_data_get", tenant_id, name=name))
        assert (answer["value_b64"], answer["version"]) == (b64(value), version)

    # and the next provision names its version again
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    assert config_row(tenant_id)["active_key"]["M"]["version"] == {"N": "3"}
    assert unwrap(invoke_sample("unwrap", tenant_id))["version"] == 3
