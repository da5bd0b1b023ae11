"""Bad input of any kind gets a clear 4xx with a stable code and changes nothing (README: Admin API,
Direct invoke)."""

from __future__ import annotations

import json

import pytest
from local_gateway import http_event
from support import Function, api_event, b64, http_sample, invoke_sample, snapshot_tables
from testenv import TABLES

PUT = "configure_put_global"


@pytest.fixture
def configured(tenant_id):
    assert Function("configure").http(http_sample(PUT, tenant_id))[0] == 200
    assert "version" in Function("tenant_data")(invoke_sample("tenant_data_put", tenant_id))
    return tenant_id


HTTP_CASES = {
    "malformed json": ("configure", PUT, {"raw_body": '{"provider": "global", "config": {'}, 400, "invalid_request"),
    "body is a list": ("configure", PUT, {"body": ["global"]}, 400, "invalid_request"),
    "empty body": ("configure", PUT, {"raw_body": ""}, 400, "invalid_request"),
    "unknown provider": ("configure", PUT, {"body": {"provider": "vault", "config": {}}}, 400, "invalid_request"),
    "provider mistyped": ("configure", PUT, {"body": {"provider": 7, "config": {}}}, 400, "invalid_request"),
    "config mistyped": ("configure", PUT, {"body": {"provider": "global", "config": "{}"}}, 400, "invalid_request"),
    "extra top-level field": (
        "configure",
        PUT,
        {"body": {"provider": "global", "config": {}, "force": True}},
        400,
        "invalid_request",
    ),
    "extra config field": (
        "configure",
        PUT,
        {"body": {"provider": "global", "config": {"key": "x"}}},
        400,
        "invalid_request",
    ),
    "byok shape wrong": (
        "configure",
        PUT,
        {
            "body": {
                "provider": "customer_kms_aws",
                "config": {
                    "region": "us-east-1",
                    "key_arn": "not-an-arn",
                    "role_arn": "arn:aws:iam::111122223333:role/r",
                    "external_id": "tenant-abc",
                },
            }
        },
        400,
        "invalid_request",
    ),
    "provider not deployed": (
        "configure",
        PUT,
        {"body": {"provider": "operator_kms_aws", "config": {}}},
        400,
        "invalid_request",
    ),
    "static credentials": (
        "configure",
        PUT,
        {"body": {"provider": "global", "config": {"aws_secret_access_key": "x" * 40}}},
        400,
        "static_credentials_rejected",
    ),
    "oversized body": (
        "configure",
        PUT,
        {"body": {"provider": "global", "config": {}, "pad": "x" * 20_000}},
        413,
        "payload_too_large",
    ),
    "version not a number": ("provision", "provision_destroy", {"version": "abc"}, 400, "invalid_request"),
    "version zero": ("provision", "provision_destroy", {"version": 0}, 400, "invalid_request"),
    "unknown version": ("provision", "provision_destroy", {"version": 99}, 404, "not_found"),
}


@pytest.mark.parametrize("case", list(HTTP_CASES), ids=list(HTTP_CASES))
def test_bad_http_input_is_a_clear_4xx_and_changes_nothing(configured, case):
    function, sample_name, changes, status, code = HTTP_CASES[case]
    before = snapshot_tables(TABLES)
    answer, body = Function(function).http(http_sample(sample_name, configured, **changes))
    assert (answer, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"]
    assert snapshot_tables(TABLES) == before


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/tenants/{t}/unknown", 404, "not_found"),
        ("GET", "/", 404, "not_found"),
        ("PATCH", "/tenants/{t}/kms", 405, "method_not_allowed"),
        ("PUT", "/tenants/{t}/keys", 405, "method_not_allowed"),
        ("GET", "/tenants/{t}/rewrap", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_methods_answer_with_the_error_model(configured, method, path, status, code):
    before = snapshot_tables(TABLES)
    claims = {"sub": "ops", "scope": "tenant-kms/operator"}
    event = http_event(method, path.replace("{t}", configured), claims=claims)
    answer, body = Function("configure").http(event)  # the $default route's function
    assert (answer, body["error"]["code"]) == (status, code)
    assert snapshot_tables(TABLES) == before


def test_a_routed_tenant_outside_the_pattern_is_400(configured):
    before = snapshot_tables(TABLES)
    claims = {"sub": "ops", "scope": "tenant-kms/operator"}
    event = api_event("GET", "/tenants/{tenant_id}/kms", "bad%20tenant!", stage="prod", claims=claims)
    answer, body = Function("configure").http(event)
    assert (answer, body["error"]["code"]) == (400, "invalid_request")
    assert snapshot_tables(TABLES) == before


def test_non_json_content_type_is_415(configured):
    event = http_sample(PUT, configured, raw_body="provider=global")
    event["headers"]["content-type"] = "application/x-www-form-urlencoded"
    answer, body = Function("configure").http(event)
    assert (answer, body["error"]["code"]) == (415, "unsupported_media_type")


INVOKE_CASES = {
    "unwrap extra field": ("unwrap", "unwrap", {"admin": True}),
    "unwrap version as string": ("unwrap", "unwrap", {"version": "1"}),
    "unwrap version zero": ("unwrap", "unwrap", {"version": 0}),
    "unwrap version boolean": ("unwrap", "unwrap", {"version": True}),
    "unwrap tenant with slash": ("unwrap", "unwrap", {"tenant_id": "a/b"}),
    "data unknown op": ("tenant_data", "tenant_data_put", {"op": "patch"}),
    "data put without value": ("tenant_data", "tenant_data_get", {"op": "put"}),
    "data get with value": ("tenant_data", "tenant_data_get", {"value_b64": "AA=="}),
    "data bad base64": ("tenant_data", "tenant_data_put", {"value_b64": "abc"}),
    "data empty name": ("tenant_data", "tenant_data_put", {"name": ""}),
    "data control character": ("tenant_data", "tenant_data_put", {"name": "a\nb"}),
    "data value too large": ("tenant_data", "tenant_data_put", {"value_b64": b64(b"x" * (256 * 1024 + 1))}),
}


@pytest.mark.parametrize("case", list(INVOKE_CASES), ids=list(INVOKE_CASES))
def test_bad_invoke_payload_is_invalid_request_and_changes_nothing(configured, case):
    function, sample_name, changes = INVOKE_CASES[case]
    before = snapshot_tables(TABLES)
    event = invoke_sample(sample_name, configured)
    event.update(changes)
    answer = Function(function)(event)
    assert answer["error"]["code"] == "invalid_request", answer
    assert snapshot_tables(TABLES) == before


@pytest.mark.parametrize("payload", [[], "acme", None, 7, json.dumps({"tenant_id": "acme"})])
def test_invoke_payload_that_is_not_an_object(payload):
    assert Function("unwrap")(payload)["error"]["code"] == "invalid_request"
