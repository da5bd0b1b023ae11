"""Where admin claims come from: the deployed API's JWT authorizer, and nothing else, unless the
local template for sam local says a Lambda authorizer's context (local/sam_local.py)."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from claims_authorizer.claims_authorizer import handler as local_authorizer
from local_tables import load_template
from sam_local import LOCAL_AUTHORIZER, sam_environment, write_local_template

from tenant_kms.api import caller_of
from tenant_kms.errors import Unauthorized
from tenant_kms.settings import ConfigurationError, Settings

CLAIMS = {"sub": "alice", "tenant_id": "acme", "scope": "tenant-kms/admin openid"}


def event(authorizer: dict) -> dict:
    return {"version": "2.0", "rawPath": "/tenants/acme/kms", "requestContext": {"authorizer": authorizer}}


def test_jwt_mode_reads_only_the_jwt_authorizers_claims():
    caller = caller_of(event({"jwt": {"claims": CLAIMS, "scopes": None}}), "jwt")
    assert (caller.actor, caller.tenant_id, caller.may_act_on("acme"), caller.may_act_on("other")) == (
        "alice",
        "acme",
        True,
        False,
    )
    with pytest.raises(Unauthorized):
        caller_of(event({"lambda": CLAIMS}), "jwt")


def test_lambda_mode_reads_only_the_lambda_authorizers_context():
    caller = caller_of(event({"lambda": CLAIMS}), "lambda")
    assert (caller.actor, caller.tenant_id, "tenant-kms/admin" in caller.scopes) == ("alice", "acme", True)
    with pytest.raises(Unauthorized):
        caller_of(event({"jwt": {"claims": CLAIMS}}), "lambda")
    with pytest.raises(Unauthorized):
        caller_of(event({"lambda": {}}), "lambda")


def test_admin_authorizer_setting():
    base = {
        "CONFIG_TABLE": "c",
        "KEY_VERSION_TABLE": "k",
        "TENANT_DATA_TABLE": "d",
        "MASTER_KEY_B64": base64.b64encode(b"k" * 32).decode(),
    }
    assert Settings.from_env(base).admin_authorizer == "jwt"
    assert Settings.from_env({**base, "ADMIN_AUTHORIZER": "lambda"}).admin_authorizer == "lambda"
    with pytest.raises(ConfigurationError, match="ADMIN_AUTHORIZER"):
        Settings.from_env({**base, "ADMIN_AUTHORIZER": "none"})


def test_the_deployed_template_uses_the_jwt_authorizer_only():
    template = load_template()
    assert template["Globals"]["Function"]["Environment"]["Variables"]["ADMIN_AUTHORIZER"] == "jwt"
    auth = template["Resources"]["AdminApi"]["Properties"]["Auth"]
    assert set(auth["Authorizers"]) == {auth["DefaultAuthorizer"]}
    (authorizer,) = auth["Authorizers"].values()
    assert "JwtConfiguration" in authorizer and "FunctionArn" not in authorizer
    assert LOCAL_AUTHORIZER not in template["Resources"]


@pytest.mark.parametrize("origins", ["", "https://admin.example.net,http://localhost:5173"])
def test_the_local_template_differs_only_in_the_authorizer_and_cors_as_deployed(tmp_path, origins):
    built = load_template()  # sam build writes it as plain YAML, intrinsics as mappings
    (tmp_path / "template.yaml").write_text(yaml.safe_dump(built, sort_keys=False))
    local = yaml.safe_load(write_local_template(tmp_path, origins).read_text())

    # CORS as AdminUiOrigins=origins deploys it: none, or the configured headers for those origins.
    _, allowed, _ = built["Resources"]["AdminApi"]["Properties"].pop("CorsConfiguration")["Fn::If"]
    cors = local["Resources"]["AdminApi"]["Properties"].pop("CorsConfiguration", None)
    assert cors == ({**allowed, "AllowOrigins": origins.split(",")} if origins else None)

    assert local["Resources"].pop(LOCAL_AUTHORIZER)["Properties"]["Handler"] == "claims_authorizer.handler"
    auth = local["Resources"]["AdminApi"]["Properties"].pop("Auth")
    assert auth["DefaultAuthorizer"] == LOCAL_AUTHORIZER
    assert auth["Authorizers"][LOCAL_AUTHORIZER]["Identity"] == {"Headers": ["X-Local-Claims"]}
    assert local["Globals"]["Function"]["Environment"]["Variables"].pop("ADMIN_AUTHORIZER") == "lambda"
    built["Resources"]["AdminApi"]["Properties"].pop("Auth")
    built["Globals"]["Function"]["Environment"]["Variables"].pop("ADMIN_AUTHORIZER")
    assert local == built


@pytest.mark.parametrize(
    ("headers", "context"),
    [
        ({"x-local-claims": json.dumps(CLAIMS)}, CLAIMS),
        ({"X-Local-Claims": json.dumps(CLAIMS)}, CLAIMS),
        # sam local answers 401 itself when the header is missing; the rest carry no claims,
        # and the function answers 401 (a 403 of the authorizer's would be in sam's own words).
        ({"x-local-claims": "not json"}, {}),
        ({"x-local-claims": "[]"}, {}),
        ({"x-local-claims": '"alice"'}, {}),
        ({"x-local-claims": "{}"}, {}),
        ({"authorization": "Bearer x"}, {}),
    ],
)
def test_the_local_authorizer_passes_the_header_on_as_its_context(headers, context):
    answer = local_authorizer({"version": "2.0", "type": "REQUEST", "headers": headers}, None)
    assert answer == {"isAuthorized": True, "context": context}


def test_sam_gets_no_shell_value_for_a_declared_variable_and_no_real_credentials(tmp_path, monkeypatch):
    """sam local prefers the shell's value of a declared variable over the template's."""
    built = load_template()
    (tmp_path / "template.yaml").write_text(yaml.safe_dump(built, sort_keys=False))
    monkeypatch.setenv("ADMIN_AUTHORIZER", "jwt")
    monkeypatch.setenv("CONFIG_TABLE", "somewhere-else")
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALREALREALREAL")
    env = sam_environment(write_local_template(tmp_path))
    assert "ADMIN_AUTHORIZER" not in env and "CONFIG_TABLE" not in env and "AWS_PROFILE" not in env
    assert (env["AWS_ACCESS_KEY_ID"], env["SAM_CLI_TELEMETRY"]) == ("local", "0")
