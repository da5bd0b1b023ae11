"""Rotating AWS KMS wrapping keys with nothing sealed, through moto (IAM enforced, key states
enforced as AWS does): the operator's key parameter changes, or a customer's alias is pointed
at another key; the scheduled re-wrap sweep re-wraps every version under the new key, and disabling
the old key afterwards leaves every record readable."""

from __future__ import annotations

import secrets

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import make_customer
from deployment import own_tables
from moto.core.authorization import disable_iam_authentication
from support import Function, http_sample, rewrap_wrapping_keys
from world import configure, put_records, read, view


@pytest.fixture
def deployment(monkeypatch, aws):
    own_tables(monkeypatch)
    return aws


def new_key(description: str) -> str:
    with disable_iam_authentication():
        return boto3.client("kms").create_key(Description=description)["KeyMetadata"]["Arn"]


def disable(key_arn: str) -> None:
    with disable_iam_authentication():
        kms = boto3.client("kms")
        kms.disable_key(KeyId=key_arn.rsplit("/", 1)[1])  # moto takes the key id only
        with pytest.raises(ClientError, match="DisabledException"):  # as AWS answers, so nothing below is vacuous
            kms.encrypt(KeyId=key_arn, Plaintext=b"x")


def key_ids(tenant: str) -> list[str]:
    listed = Function("provision").http(http_sample("provision_list", tenant))[1]["versions"]
    return [v["key_id"] for v in listed]


def records_under_two_versions(tenant: str) -> dict[str, bytes]:
    values = {"one": secrets.token_bytes(16)}
    put_records(tenant, values)
    assert Function("provision").http(http_sample("provision_post", tenant))[0] == 201
    later = {"two": secrets.token_bytes(16)}
    put_records(tenant, later)
    return values | later


def everything_reads(tenants: dict[str, dict[str, bytes]]) -> None:
    """On a fresh instance (nothing cached); every version holds a record, so each one unwraps."""
    data = Function("tenant_data")
    for tenant, values in tenants.items():
        assert {n: read(tenant, n, data)[0] for n in values} == values, tenant
        assert view(tenant)["status"] == "active"


def test_the_operator_key_parameter_changes_and_the_old_key_is_disabled(deployment, monkeypatch):
    # Given operator_kms_aws tenants under the operator's key K1
    k1, k2 = new_key("operator K1"), new_key("operator K2")
    monkeypatch.setenv("OPERATOR_KMS_KEY_ARN", k1)
    tenants = {}
    for tenant in ("acme", "globex"):
        assert configure(tenant, "operator_kms_aws", {})[0] == 200
        tenants[tenant] = records_under_two_versions(tenant)

    # When the deployment's parameter names K2
    monkeypatch.setenv("OPERATOR_KMS_KEY_ARN", k2)

    # Then every record still reads, and a new version wraps under K2
    everything_reads(tenants)
    assert Function("provision").http(http_sample("provision_post", "acme"))[0] == 201
    tenants["acme"]["three"] = b"under K2"
    put_records("acme", {"three": b"under K2"})
    assert key_ids("acme") == [k1, k1, k2]

    # When the scheduled re-wrap sweep re-wraps
    keys = rewrap_wrapping_keys("acme", "globex")
    assert keys == {"checked": 5, "current": 1, "rewrapped": 4}
    assert key_ids("acme") == [k2, k2, k2] and key_ids("globex") == [k2, k2]

    # Then K1 can be disabled: every record reads on fresh instances, nothing is sealed
    disable(k1)
    everything_reads(tenants)


def test_a_customer_alias_pointed_at_another_key(deployment, tenant_id):
    # Given a customer tenant configured with an alias of key A
    customer = make_customer(deployment, tenant_id)
    alias = f"alias/tmk-{tenant_id}"
    key_b = new_key("customer key B")
    with disable_iam_authentication():
        boto3.client("kms").create_alias(AliasName=alias, TargetKeyId=customer.key_arn)
    alias_arn = customer.key_arn.split(":key/")[0] + f":{alias}"
    assert configure(tenant_id, "customer_kms_aws", customer.config(key_arn=alias_arn))[0] == 200
    tenants = {tenant_id: records_under_two_versions(tenant_id)}
    assert key_ids(tenant_id) == [customer.key_arn] * 2

    # When the customer points the alias at key B and the re-wrap sweep visits it
    with disable_iam_authentication():
        boto3.client("kms").update_alias(AliasName=alias, TargetKeyId=key_b)
    keys = rewrap_wrapping_keys(tenant_id)

    # Then both versions are re-wrapped under B, and disabling A seals nothing
    assert keys == {"checked": 2, "rewrapped": 2}
    assert key_ids(tenant_id) == [key_b] * 2
    disable(customer.key_arn)
    everything_reads(tenants)
