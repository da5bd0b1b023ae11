"""In a deployment the global master key comes from the Secrets Manager secret the template
names, read with Powertools parameters (here: moto's Secrets Manager on loopback)."""

from __future__ import annotations

import base64
import secrets

import boto3
import pytest

from kms_wrapping import WrapContext
from tenant_kms.providers import build_registry, load_master_key
from tenant_kms.settings import ConfigurationError, Settings


@pytest.fixture
def secrets_manager(moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server)
    return boto3.client("secretsmanager")


def settings_for(secret_id: str) -> Settings:
    return Settings.from_env(
        {"CONFIG_TABLE": "c", "KEY_VERSION_TABLE": "k", "TENANT_DATA_TABLE": "d", "MASTER_KEY_SECRET_ID": secret_id}
    )


def test_global_wrap_uses_the_master_key_from_the_secret(secrets_manager, tenant_id):
    master = secrets.token_bytes(32)
    arn = secrets_manager.create_secret(Name=f"mk-{tenant_id}", SecretString=base64.b64encode(master).decode())["ARN"]
    settings = settings_for(arn)
    assert load_master_key(settings) == master
    wrapper = build_registry(settings).wrapper_for("global", {}, tenant_id)
    from kms_wrapping.global_wrap import GlobalKeyWrapper

    tmk = secrets.token_bytes(32)
    wrapped = wrapper.wrap(tmk, WrapContext(tenant_id, 1))
    assert GlobalKeyWrapper(master_key=master).unwrap(wrapped, WrapContext(tenant_id, 1)) == tmk


def test_a_malformed_secret_is_a_clear_error_naming_it(secrets_manager, tenant_id):
    arn = secrets_manager.create_secret(Name=f"bad-{tenant_id}", SecretString="not a key")["ARN"]
    with pytest.raises(ConfigurationError, match="MASTER_KEY_SECRET_ID") as error:
        load_master_key(settings_for(arn))
    assert "not a key" not in str(error.value)
