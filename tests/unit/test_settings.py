"""A missing or malformed setting stops start-up with an error naming it."""

from __future__ import annotations

import base64

import pytest

from tenant_kms.settings import ConfigurationError, Settings

BASE = {"CONFIG_TABLE": "c", "KEY_VERSION_TABLE": "k", "TENANT_DATA_TABLE": "d", "AWS_REGION": "eu-west-1"}
KEY = base64.b64encode(b"k" * 32).decode()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "MASTER_KEY_SECRET_ID"),
        ({"MASTER_KEY_B64": "not base64!"}, "MASTER_KEY_B64"),
        ({"MASTER_KEY_B64": base64.b64encode(b"short").decode()}, "MASTER_KEY_B64"),
        ({"MASTER_KEY_B64": KEY, "CONFIG_TABLE": ""}, "CONFIG_TABLE"),
        ({"MASTER_KEY_B64": KEY, "BYOK_SESSION_TTL_SECONDS": "301"}, "BYOK_SESSION_TTL_SECONDS"),
        ({"MASTER_KEY_B64": KEY, "SESSION_TTL_SECONDS": "soon"}, "SESSION_TTL_SECONDS"),
        ({"MASTER_KEY_B64": KEY, "KEY_WRAPPING_ROLE_ARN": "arn:aws:iam::1:user/x"}, "KEY_WRAPPING_ROLE_ARN"),
        ({"MASTER_KEY_B64": KEY, "FEDERATION_ISSUER_URL": "http://kms.example.com"}, "FEDERATION_ISSUER_URL"),
        # API Gateway cuts at 30 s: a route's deadline must leave it time to carry the answer.
        ({"MASTER_KEY_B64": KEY, "ADMIN_ROUTE_DEADLINE_SECONDS": "30"}, "ADMIN_ROUTE_DEADLINE_SECONDS"),
    ],
)
def test_bad_settings_name_the_setting(env, named):
    with pytest.raises(ConfigurationError, match=named) as error:
        Settings.from_env({**BASE, **env})
    assert KEY not in str(error.value)


def test_settings_from_env_and_the_key_stays_out_of_repr():
    settings = Settings.from_env({**BASE, "MASTER_KEY_B64": KEY, "BYOK_SESSION_TTL_SECONDS": "120"})
    assert (settings.region, settings.session_ttl_seconds, settings.byok_session_ttl_seconds) == (
        "eu-west-1",
        3600,
        120,
    )
    assert KEY not in repr(settings)
    assert Settings.from_env({**BASE, "MASTER_KEY_SECRET_ID": "arn:aws:secretsmanager:x"}).master_key_b64 == ""


def test_identity_settings():
    settings = Settings.from_env(
        {
            **BASE,
            "MASTER_KEY_B64": KEY,
            "KEY_WRAPPING_ROLE_ARN": "arn:aws:iam::111122223333:role/tenant-kms-key-wrapping",
            "FEDERATION_ISSUER_URL": "https://kms.example.com/",
            "FEDERATION_SIGNING_KEY_ID": "arn:aws:kms:eu-west-1:111122223333:key/k",
        }
    )
    assert settings.key_wrapping_role_arn.endswith(":role/tenant-kms-key-wrapping")
    assert settings.federation_issuer_url == "https://kms.example.com"  # as the JWT's iss, no trailing slash
