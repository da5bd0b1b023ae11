"""Re-wrap after a GCP or Azure wrapping key rotates, through the wire fakes and the real
adapters: a Cloud KMS key whose primary version moved, a Key Vault key with a newer version.
The scheduled re-wrap sweep re-wraps every version under the new key version; afterwards the old key
version is destroyed (GCP) or disabled (Azure), genuinely refuses what it wrapped, and every
record still reads with nothing sealed."""

from __future__ import annotations

import secrets

import pytest
from deployment import own_tables
from support import Function, b64, http_sample, invoke_sample, read_record, rewrap_wrapping_keys, step_up

from kms_wrapping import KeyAccessRefused, WrapContext, WrappedKey
from tenant_kms.models import KeyVersion


@pytest.fixture
def deployment(monkeypatch):
    return own_tables(monkeypatch)


def configure(tenant_id: str, provider: str, config: dict) -> None:
    body = {"provider": provider, "config": config}
    status, view = Function("configure").http(step_up(http_sample("configure_put_global", tenant_id, body=body)))
    assert status == 200, view


def records_on_two_versions(tenant_id: str) -> dict[str, bytes]:
    data = Function("tenant_data")
    values = {"one": secrets.token_bytes(16), "two": secrets.token_bytes(16)}
    assert data(invoke_sample("tenant_data_put", tenant_id, name="one", value_b64=b64(values["one"])))["version"] == 1
    assert Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[0] == 201
    assert data(invoke_sample("tenant_data_put", tenant_id, name="two", value_b64=b64(values["two"])))["version"] == 2
    return values


def key_ids(tenant_id: str) -> list[str]:
    return [v["key_id"] for v in Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]]


def rotate_and_retire(tenant_id, provider, config, values, rotate, retire_old) -> None:
    """The key rotates, the re-wrap sweep visits the tenant, the old key version goes: nothing is lost."""
    old = KeyVersion.get(tenant_id, 1, consistent_read=True)
    new_key_id = rotate()
    assert key_ids(tenant_id) == [old.key_id, old.key_id] != [new_key_id] * 2

    keys = rewrap_wrapping_keys(tenant_id)

    assert keys == {"checked": 2, "rewrapped": 2}
    assert key_ids(tenant_id) == [new_key_id, new_key_id]
    retire_old()
    # The old key version really is gone: what it wrapped no longer unwraps
    wrapper = Function("unwrap").service.registry.wrapper_for(provider, config, tenant_id)
    with pytest.raises(KeyAccessRefused):
        wrapper.unwrap(WrappedKey(old.key_id, old.wrapped_key), WrapContext(tenant_id, 1))
    # and nothing needed it any more
    data = Function("tenant_data")
    assert {name: read_record(data, tenant_id, name)[0] for name in values} == values
    view = Function("configure").http(http_sample("configure_get", tenant_id))[1]
    assert view["status"] == "active"


@pytest.mark.parametrize("provider", ["customer_kms_gcp", "operator_kms_gcp"])
def test_gcp_primary_version_moves(gcp, deployment, tenant_id, provider):
    customer = gcp.customer(tenant_id) if provider == "customer_kms_gcp" else None
    config = customer.config if customer else {}
    key_name = customer.key_name if customer else Function("unwrap").service.settings.operator_gcp_key_name
    configure(tenant_id, provider, config)
    values = records_on_two_versions(tenant_id)

    def rotate() -> str:
        version = gcp.kms.create_version(key_name)
        wrapper = Function("unwrap").service.registry.wrapper_for(provider, config, tenant_id)
        assert wrapper.current_key_id(tenant_id).endswith("/cryptoKeyVersions/1")  # not primary yet
        gcp.kms.set_primary(key_name, version)
        return f"{key_name}/cryptoKeyVersions/{version}"

    rotate_and_retire(tenant_id, provider, config, values, rotate, lambda: gcp.kms.set_state(key_name, 1, "DESTROYED"))


@pytest.mark.parametrize("provider", ["customer_kms_azure", "operator_kms_azure"])
def test_azure_key_gets_a_new_version(azure, deployment, tenant_id, provider):
    customer = azure.customer(tenant_id) if provider == "customer_kms_azure" else azure.operator
    config = customer.config if provider == "customer_kms_azure" else {}
    configure(tenant_id, provider, config)
    values = records_on_two_versions(tenant_id)
    key = customer.key
    first = key.current

    rotate_and_retire(
        tenant_id, provider, config, values, lambda: key.kid(key.rotate()), lambda: key.disabled_versions.add(first)
    )
