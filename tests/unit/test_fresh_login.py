"""Step-up (RFC 9470): which logins are recent enough, and where the maximum ages come from."""

from __future__ import annotations

import base64

import pytest
from local_tables import load_template

from tenant_kms.api import AUTH_TIME_SKEW_SECONDS, STEP_UP_ROUTES, Caller, require_fresh_login
from tenant_kms.errors import StepUpRequired
from tenant_kms.settings import ConfigurationError, Settings

NOW = 1_800_000_000


def caller(auth_time) -> Caller:
    return Caller(actor="alice", tenant_id="acme", scopes=frozenset({"tenant-kms/admin"}), auth_time=auth_time)


@pytest.mark.parametrize(
    "auth_time",
    [NOW, NOW - 300, str(NOW - 300), NOW - 299.5, NOW + AUTH_TIME_SKEW_SECONDS, f" {NOW} "],
)
def test_a_login_within_the_max_age_passes(auth_time):
    require_fresh_login(caller(auth_time), 300, NOW)


@pytest.mark.parametrize(
    "auth_time",
    [
        None,
        NOW - 301,
        str(NOW - 301),
        NOW + AUTH_TIME_SKEW_SECONDS + 1,
        True,
        False,
        "",
        "soon",
        "1.8e9",
        "-1",
        float("nan"),
        float("inf"),
        [NOW],
        {"t": NOW},
    ],
)
def test_a_missing_stale_future_or_malformed_login_asks_for_a_step_up(auth_time):
    with pytest.raises(StepUpRequired) as refused:
        require_fresh_login(caller(auth_time), 300, NOW)
    assert refused.value.status == 401
    assert refused.value.as_body()["error"]["code"] == "step_up_required"
    assert refused.value.headers == {"WWW-Authenticate": 'Bearer error="insufficient_user_authentication", max_age=300'}


def test_the_step_up_routes_and_their_max_ages():
    assert STEP_UP_ROUTES == {
        "PUT /tenants/{tenant_id}/kms": "step_up_max_age_seconds",
        "POST /tenants/{tenant_id}/keys": "step_up_max_age_seconds",
        "DELETE /tenants/{tenant_id}/keys/{version}": "step_up_max_age_seconds",
        "DELETE /tenants/{tenant_id}": "step_up_max_age_seconds",
        "POST /tenants/{tenant_id}/kms/unseal": "unseal_step_up_max_age_seconds",
    }


BASE_ENV = {
    "CONFIG_TABLE": "c",
    "KEY_VERSION_TABLE": "k",
    "TENANT_DATA_TABLE": "d",
    "MASTER_KEY_B64": base64.b64encode(b"k" * 32).decode(),
}


def test_max_ages_default_to_300_and_120_seconds_and_are_settings():
    defaults = Settings.from_env(BASE_ENV)
    assert (defaults.step_up_max_age_seconds, defaults.unseal_step_up_max_age_seconds) == (300, 120)
    chosen = Settings.from_env({**BASE_ENV, "STEP_UP_MAX_AGE_SECONDS": "600", "UNSEAL_STEP_UP_MAX_AGE_SECONDS": "60"})
    assert (chosen.step_up_max_age_seconds, chosen.unseal_step_up_max_age_seconds) == (600, 60)
    with pytest.raises(ConfigurationError, match="STEP_UP_MAX_AGE_SECONDS"):
        Settings.from_env({**BASE_ENV, "STEP_UP_MAX_AGE_SECONDS": "0"})


def test_the_template_declares_the_max_ages_from_parameters():
    template = load_template()
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["STEP_UP_MAX_AGE_SECONDS"] == {"Ref": "StepUpMaxAgeSeconds"}
    assert variables["UNSEAL_STEP_UP_MAX_AGE_SECONDS"] == {"Ref": "UnsealStepUpMaxAgeSeconds"}
    assert template["Parameters"]["StepUpMaxAgeSeconds"]["Default"] == 300
    assert template["Parameters"]["UnsealStepUpMaxAgeSeconds"]["Default"] == 120
