"""The README's Cognito recipe: the pre token generation trigger's access tokens carry the
claims the admin API authorises with."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tenant_kms.api import caller_of, require_fresh_login

TRIGGER = Path(__file__).resolve().parents[2] / "examples" / "cognito" / "pre_token_generation.py"
LOGIN = 1_790_000_000


def trigger():
    spec = importlib.util.spec_from_file_location("pre_token_generation", TRIGGER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


def v2_event(groups: list[str], attributes: dict[str, str], scopes: list[str]) -> dict:
    """A V2_0 event as Cognito sends it on sign-in (the fields the trigger reads)."""
    return {
        "version": "2",
        "triggerSource": "TokenGeneration_Authentication",
        "userName": "alice",
        "request": {
            "userAttributes": {"sub": "a1b2", **attributes},
            "groupConfiguration": {"groupsToOverride": groups, "iamRolesToOverride": [], "preferredRole": None},
            "scopes": scopes,
        },
        "response": {"claimsAndScopeOverrideDetails": None},
    }


def admin_api_claims(event: dict) -> dict:
    """The access token Cognito issues from the trigger's answer, as API Gateway's JWT
    authorizer hands its claims on (every value a string)."""
    answer = trigger()(event, None)["response"]["claimsAndScopeOverrideDetails"]["accessTokenGeneration"]
    scopes = [s for s in event["request"]["scopes"] if s not in answer["scopesToSuppress"]] + answer["scopesToAdd"]
    claims = {"sub": "a1b2", "token_use": "access", "auth_time": str(LOGIN), "scope": " ".join(scopes)}
    return {**claims, **{name: str(value) for name, value in answer["claimsToAddOrOverride"].items()}}


def caller(event: dict):
    return caller_of({"requestContext": {"authorizer": {"jwt": {"claims": admin_api_claims(event)}}}})


def test_a_tenant_admin_acts_on_its_own_tenant_only_and_its_login_time_counts():
    admin = caller(v2_event(["tenant-kms-admins"], {"custom:tenant_id": "acme"}, ["aws.cognito.signin.user.admin"]))
    assert admin.may_act_on("acme") and not admin.may_act_on("globex")
    require_fresh_login(admin, 300, now=LOGIN + 299)  # no step_up_required


def test_an_operator_acts_on_any_tenant():
    assert caller(v2_event(["tenant-kms-operators"], {}, ["openid"])).may_act_on("globex")


def test_a_scope_the_client_asked_for_is_granted_only_by_a_group():
    asked = ["openid", "tenant-kms/admin", "tenant-kms/operator"]
    outsider = caller(v2_event(["staff"], {"custom:tenant_id": "acme"}, asked))
    assert not outsider.may_act_on("acme") and not outsider.may_act_on("globex")
