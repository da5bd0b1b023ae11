"""In a deployment the global master key comes from the Secrets Manager secret the template
names, read with Powertools parameters (here: moto's Secrets Manager on loopback): its
AWSCURRENT version is the current key and AWSPREVIOUS is still accepted."""

from __future__ import annotations

import base64
import secrets

import boto3
import pytest

from kms_wrapping import ProviderUnavailable, WrapContext
from kms_wrapping.global_wrap import GlobalKeyWrapper, master_key_id
from tenant_kms.providers import MasterKeySecret, build_registry, load_master_keys
from tenant_kms.settings import ConfigurationError, Settings


@pytest.fixture
def secrets_manager(moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server)
    return boto3.client("secretsmanager")


def settings_for(secret_id: str) -> Settings:
    return Settings.from_env(
        {"CONFIG_TABLE": "c", "KEY_VERSION_TABLE": "k", "TENANT_DATA_TABLE": "d", "MASTER_KEY_SECRET_ID": secret_id}
    )


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_global_wrap_uses_the_master_key_from_the_secret(secrets_manager, tenant_id):
    master = secrets.token_bytes(32)
    arn = secrets_manager.create_secret(Name=f"mk-{tenant_id}", SecretString=b64(master))["ARN"]
    settings = settings_for(arn)
    assert load_master_keys(settings) == [master]  # no AWSPREVIOUS before the first rotation
    wrapper = build_registry(settings).wrapper_for("global", {}, tenant_id)

    tmk = secrets.token_bytes(32)
    wrapped = wrapper.wrap(tmk, WrapContext(tenant_id, 1))
    assert GlobalKeyWrapper(master_key=master).unwrap(wrapped, WrapContext(tenant_id, 1)) == tmk


def test_a_rotated_secret_wraps_under_awscurrent_and_still_unwraps_under_awsprevious(secrets_manager, tenant_id):
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    arn = secrets_manager.create_secret(Name=f"mk-rot-{tenant_id}", SecretString=b64(k1))["ARN"]
    settings = settings_for(arn)
    behind = build_registry(settings).wrapper_for("global", {}, tenant_id)  # an instance started before
    old = behind.wrap(old_tmk := secrets.token_bytes(32), WrapContext(tenant_id, 1))
    assert old.key_id == master_key_id(k1)

    # When the secret rotates: K2 becomes AWSCURRENT, K1 moves to AWSPREVIOUS
    secrets_manager.put_secret_value(SecretId=arn, SecretString=b64(k2))
    stages = secrets_manager.list_secret_version_ids(SecretId=arn)["Versions"]
    assert sorted(s for v in stages for s in v["VersionStages"]) == ["AWSCURRENT", "AWSPREVIOUS"]

    # Then a new instance holds the ring K2, K1 (each stage read for itself, not from one cache entry)
    assert load_master_keys(settings) == [k2, k1]
    fresh = build_registry(settings).wrapper_for("global", {}, tenant_id)
    new = fresh.wrap(new_tmk := secrets.token_bytes(32), WrapContext(tenant_id, 2))
    assert new.key_id == master_key_id(k2)
    assert fresh.unwrap(old, WrapContext(tenant_id, 1)) == old_tmk

    # And the instance whose cached copy predates the rotation unwraps K2's wrap after one fresh read
    assert behind.unwrap(new, WrapContext(tenant_id, 2)) == new_tmk
    assert behind.wrap(secrets.token_bytes(32), WrapContext(tenant_id, 3)).key_id == master_key_id(k2)


def test_a_malformed_secret_is_a_clear_error_naming_it(secrets_manager, tenant_id):
    arn = secrets_manager.create_secret(Name=f"bad-{tenant_id}", SecretString="not a key")["ARN"]
    with pytest.raises(ConfigurationError, match="MASTER_KEY_SECRET_ID") as error:
        load_master_keys(settings_for(arn))
    assert "not a key" not in str(error.value)
    # Met by a function, it is an outage (503), never a refusal that would seal a tenant
    wrapper = build_registry(settings_for(arn)).wrapper_for("global", {}, tenant_id)
    with pytest.raises(ProviderUnavailable, match="MASTER_KEY_SECRET_ID"):
        wrapper.wrap(secrets.token_bytes(32), WrapContext(tenant_id, 1))


def test_a_missing_awsprevious_is_remembered_not_asked_on_every_use(secrets_manager, tenant_id):
    k1 = secrets.token_bytes(32)
    arn = secrets_manager.create_secret(Name=f"mk-once-{tenant_id}", SecretString=b64(k1))["ARN"]
    secret = MasterKeySecret(arn)
    calls = []
    secret._value = lambda stage, force, real=secret._value: calls.append(stage) or real(stage, force)
    for _ in range(3):
        assert secret() == [k1]
    assert calls == ["AWSCURRENT", "AWSPREVIOUS", "AWSCURRENT", "AWSCURRENT"]
