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
