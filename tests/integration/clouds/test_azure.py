"""Azure Key Vault, operator and BYOK, through the production registry and the real SDK
pipeline against the Key Vault and Entra ID wire fakes."""

from __future__ import annotations

import boto3
import pytest
from support import Function, b64, http_sample, invoke_sample
from support import read_record as read
from testenv import TABLES

from kms_wrapping import WrapContext
from kms_wrapping.azure_kv import binding_digest


def configure(tenant_id: str, provider: str, config: dict) -> tuple[int, dict]:
    body = {"provider": provider, "config": config}
    return Function("configure").http(http_sample("configure_put_global", tenant_id, body=body))


def provision(tenant_id: str) -> int:
    return Function("provision").http(http_sample("provision_post", tenant_id))[0]


def view(tenant_id: str) -> dict:
    return Function("configure").http(http_sample("configure_get", tenant_id))[1]


def versions(tenant_id: str) -> list[dict]:
    return Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]


def key_row(tenant_id: str, version: int) -> dict:
    return boto3.client("dynamodb").get_item(
        TableName=TABLES["KeyVersionTable"],
        Key={"tenant_id": {"S": tenant_id}, "version": {"N": str(version)}},
        ConsistentRead=True,
    )["Item"]


def put_key_row(item: dict) -> None:
    boto3.client("dynamodb").put_item(TableName=TABLES["KeyVersionTable"], Item=item)


def test_customer_key_wraps_signs_and_unwraps_in_the_vault_with_the_crypto_user_role(azure, tenant_id):
    customer = azure.customer(tenant_id)
    status, answer = configure(tenant_id, "customer_kms_azure", customer.config)
    assert status == 200, answer
    assert answer["session_ttl_seconds"] == 300 and answer["last_verified_at"]
    assert provision(tenant_id) == 201
    data = Function("tenant_data")
    assert data(invoke_sample("tenant_data_put", tenant_id, name="s", value_b64=b64(b"secret")))["version"] == 2
    assert read(Function("tenant_data"), tenant_id, "s") == (b"secret", 2)
    assert read_unwrap(tenant_id, 1)["version"] == 1

    # The role can read the key, yet every wrap and unwrap happened in the vault.
    kid = f"https://{customer.key.host}/keys/{customer.key.name}/{customer.key.current}"
    assert [v["key_id"] for v in versions(tenant_id)] == [kid, kid]
    app = customer.client_id
    for version in (1, 2):
        binding = binding_digest(WrapContext(tenant_id, version))
        seen = [r for r in azure.vault.requests if r.get("binding") == binding]
        assert {r["path"].rsplit("/", 1)[1] for r in seen} == {"unwrapkey", "wrapkey"}
        assert all(r["body"]["alg"] == "RSA-OAEP-256" and r["app"] == app for r in seen)
    assert len(azure.vault.calls("sign", app)) == 3  # probe, version 1, version 2
    assert azure.vault.calls("get", app)  # the key's type and public key come from the vault
    # Every token this tenant used was exchanged for an assertion naming this tenant.
    assert set(azure.entra.subjects(app)) == {f"tenant:{tenant_id}"}


def test_operator_key_round_trip(azure, tenant_id):
    status, answer = configure(tenant_id, "operator_kms_azure", {})
    assert status == 200, answer
    assert answer["session_ttl_seconds"] == 3600
    unwrapped = Function("unwrap")(invoke_sample("unwrap", tenant_id))
    assert unwrapped["version"] == 1 and unwrapped["provider"] == "operator_kms_azure"
    assert set(azure.entra.subjects(azure.operator.client_id)) == {"operator"}


@pytest.mark.parametrize(
    ("kind", "managed_hsm", "algorithm"),
    [("oct-HSM", True, "A256KW"), ("RSA-HSM", True, "RSA-OAEP-256"), ("RSA-HSM", False, "RSA-OAEP-256")],
)
def test_algorithm_follows_the_key_type_the_vault_reports(azure, tenant_id, kind, managed_hsm, algorithm):
    customer = azure.customer(tenant_id, kind=kind, managed_hsm=managed_hsm)
    assert configure(tenant_id, "customer_kms_azure", customer.config)[0] == 200
    assert read_unwrap(tenant_id)["version"] == 1
    app = customer.client_id
    assert {r["body"]["alg"] for r in azure.vault.calls("wrapkey", app) + azure.vault.calls("unwrapkey", app)} == {
        algorithm
    }
    # Only RSA wraps need the vault's signature: AES key wrap cannot be made without the key.
    assert bool(azure.vault.calls("sign", app)) == (algorithm == "RSA-OAEP-256")


def read_unwrap(tenant_id: str, version: int | None = None) -> dict:
    event = (
        invoke_sample("unwrap", tenant_id)
        if version is None
        else invoke_sample("unwrap_version", tenant_id, version=version)
    )
    return Function("unwrap")(event)
