"""Every refusal says what was wrong and what is accepted, in words a caller can act on.

One row per bad input: the status, the stable code, and the parts of the message that make
it actionable (and, where a message used to leak Python, what it must not say). Each
refusal leaves the tables as they were.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import uuid

import pytest
from support import Function, api_event, b64, invoke_sample, snapshot_tables
from testenv import TABLES

from tenant_kms.api import ADMIN_ROUTES

PUT_KMS = ("PUT", "/tenants/{tenant_id}/kms")
DESTROY = ("DELETE", "/tenants/{tenant_id}/keys/{version}")
AZURE = {"key_id": "https://acme-vault.vault.azure.net/keys/tmk", "tenant_id": "acme", "client_id": "acme"}
BYOK_AWS = {
    "region": "us-east-1",
    "key_arn": "not-an-arn",
    "role_arn": "arn:aws:iam::111122223333:role/r",
}
VERSION_RULE = ["version must be a whole number from 1 to 1000000000", "plain decimal digits"]
BODY_RULE = ['{"provider": "<provider>", "config": {...}}']


@functools.cache
def serving(method: str, route: str) -> Function:
    return Function.serving(method, route)


@pytest.fixture(scope="module")
def tenant(dynamodb_local) -> str:
    """A tenant with an active version 1 and one record."""
    tenant_id = f"msg-{uuid.uuid4().hex[:10]}"
    assert request(*PUT_KMS, tenant_id, body={"provider": "global", "config": {}})[0] == 200
    assert "version" in Function("tenant_data")(invoke_sample("tenant_data_put", tenant_id))
    return tenant_id


def admin_of(tenant_id: str) -> dict:
    return {"sub": f"admin-of-{tenant_id}", "tenant_id": tenant_id, "scope": "tenant-kms/admin"}


def request(
    method: str,
    route: str,
    tenant_id: str,
    *,
    body: object = None,
    raw: bytes | None = None,
    content_type: str | None = "application/json",
    version: str = "1",
    claims: dict | str | None = "admin",
) -> tuple[int, dict, dict]:
    claims = admin_of(tenant_id) if claims == "admin" else claims
    if isinstance(claims, dict):
        claims = {**claims, "auth_time": int(time.time())}
    event = api_event(method, route, tenant_id, claims=claims, body=body, version=version)
    if raw is not None:
        try:
            event["body"], event["isBase64Encoded"] = raw.decode(), False
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    event["headers"].pop("content-type", None)
    if content_type and (body is not None or raw is not None):
        event["headers"]["content-type"] = content_type
    response = serving(method, route)(event)
    answer = response["body"]
    return response["statusCode"], response.get("headers") or {}, json.loads(answer) if answer else {}


def put(**changes: object) -> dict:
    return {"method": "PUT", "route": PUT_KMS[1], **changes}


def destroy(version: str) -> dict:
    return {"method": "DELETE", "route": DESTROY[1], "version": version}


# id: (request, status, code, fragments the message holds, fragments it must not hold)
HTTP_CASES = {
    "non-UTF-8 body": (put(raw=b'{"provider": "gl\xffobal"}'), 400, "invalid_request", ["UTF-8", *BODY_RULE], []),
    "deeply nested body": (put(raw=b"[" * 5000 + b"]" * 5000), 400, "invalid_request", ["deeper than 32"], []),
    "config string holding deeply nested JSON": (
        put(body={"provider": "global", "config": {"note": "[" * 5000 + "]" * 5000}}),
        400,
        "invalid_request",
        ["config.note", "deeper than 32", "references"],
        [],
    ),
    "number longer than Python parses": (
        put(raw=b'{"provider": "global", "config": {"n": ' + b"9" * 5000 + b"}}"),
        400,
        "invalid_request",
        ["number longer than 4300 digits"],
        [],
    ),
    "malformed JSON": (
        put(raw=b'{"provider": "global", "config": {'),
        400,
        "invalid_request",
        ["body is not valid JSON at character", *BODY_RULE],
        [],
    ),
    "empty body": (put(raw=b""), 400, "invalid_request", ["body is required", *BODY_RULE], []),
    "empty body sent as multipart": (
        put(raw=b"", content_type="multipart/form-data"),
        400,
        "invalid_request",
        ["body is required", *BODY_RULE],
        [],
    ),
    "a number for a body": (put(raw=b"13"), 400, "invalid_request", ["body must be a JSON object", *BODY_RULE], []),
    "unknown provider": (
        put(body={"provider": "vault", "config": {}}),
        400,
        "invalid_request",
        ["provider must be one of", "'global'", "'operator_kms_aws'", "'customer_kms_azure'"],
        ["allowed values"],
    ),
    "extra top-level field": (
        put(body={"provider": "global", "config": {}, "force": True}),
        400,
        "invalid_request",
        ["force is not accepted", *BODY_RULE],
        [],
    ),
    "extra config field": (
        put(body={"provider": "global", "config": {"key": "x"}}),
        400,
        "invalid_request",
        ["config for global", "key is not accepted", "send {}"],
        [],
    ),
    "extra BYOK field": (
        put(body={"provider": "customer_kms_aws", "config": {**BYOK_AWS, "extra": 1}}),
        400,
        "invalid_request",
        ["extra is not accepted", "accepted fields: region, key_arn, role_arn, external_id"],
        [],
    ),
    "KMS key ARN malformed": (
        put(body={"provider": "customer_kms_aws", "config": BYOK_AWS}),
        400,
        "invalid_request",
        ["key_arn must be a KMS key ARN or alias ARN", "arn:aws:kms:<region>:<account>:key/"],
        [],
    ),
    "provider not deployed": (
        put(body={"provider": "operator_kms_aws", "config": {}}),
        400,
        "invalid_request",
        ["operator_kms_aws is not available", "operator key is not configured", "available:", "global"],
        [],
    ),
    "Azure ids malformed": (
        put(body={"provider": "customer_kms_azure", "config": AZURE}),
        400,
        "invalid_request",
        ["tenant_id must be a UUID", "client_id must be a UUID"],
        ["wrong format"],
    ),
    "JSON without a content type": (
        put(body={"provider": "global", "config": {}}, content_type=None),
        415,
        "unsupported_media_type",
        ["Content-Type: application/json"],
        [],
    ),
    "form content type": (
        put(raw=b"provider=global", content_type="application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
        ["application/json"],
        [],
    ),
    "version of 42 digits": (destroy("1" * 42), 400, "invalid_request", VERSION_RULE, []),
    "version 1.0": (destroy("1.0"), 400, "invalid_request", VERSION_RULE, []),
    "version 1_0": (destroy("1_0"), 400, "invalid_request", VERSION_RULE, []),
    "version +1": (destroy("+1"), 400, "invalid_request", VERSION_RULE, []),
    "version 01": (destroy("01"), 400, "invalid_request", VERSION_RULE, []),
    "version -1": (destroy("-1"), 400, "invalid_request", VERSION_RULE, []),
    "version 0": (destroy("0"), 400, "invalid_request", VERSION_RULE, []),
    "version in Arabic-Indic digits": (destroy("\u0663"), 400, "invalid_request", VERSION_RULE, []),
    "version beyond the bound": (destroy("1000000001"), 400, "invalid_request", VERSION_RULE, []),
    "admin of another tenant": (
        {"method": "GET", "route": "/tenants/{tenant_id}/kms", "claims": admin_of("someone-else")},
        403,
        "forbidden",
        ["scope tenant-kms/admin with claim tenant_id", "or scope tenant-kms/operator"],
        [],
    ),
    "no claims": (
        {"method": "GET", "route": "/tenants/{tenant_id}/kms", "claims": None},
        401,
        "unauthorized",
        ["bearer token"],
        [],
    ),
}


@pytest.mark.parametrize("case", list(HTTP_CASES), ids=list(HTTP_CASES))
def test_admin_api_refusals_say_what_is_accepted(tenant, case):
    changes, status, code, says, never = HTTP_CASES[case]
    changes = dict(changes)
    before = snapshot_tables(TABLES)
    answer, _, body = request(changes.pop("method"), changes.pop("route"), tenant, **changes)
    assert (answer, body["error"]["code"]) == (status, code), body
    message = body["error"]["message"]
    for fragment in says:
        assert fragment in message, message
    for fragment in [*never, "{'", "Traceback", "Value error"]:
        assert fragment not in message, message
    assert snapshot_tables(TABLES) == before


NO_BODY_ROUTES = [pytest.param(m, r, id=f"{m} {r}") for m, r in ADMIN_ROUTES if (m, r) != PUT_KMS]


@pytest.mark.parametrize(("method", "route"), NO_BODY_ROUTES)
@pytest.mark.parametrize("raw", [b"{}", b"garbage", b'{"provider": "global"}', b"\xff"], ids=repr)
def test_a_body_on_a_route_that_takes_none_is_400(tenant, method, route, raw):
    """Absent or empty is the only body these routes take: anything else is refused before
    the operation runs (a provision, a rewrap, a destroy)."""
    before = snapshot_tables(TABLES)
    answer, _, body = request(method, route, tenant, raw=raw)
    assert (answer, body["error"]["code"]) == (400, "invalid_request"), body
    assert f"{method} {route} takes no body" in body["error"]["message"]
    assert snapshot_tables(TABLES) == before


def test_an_empty_body_on_a_route_that_takes_none_is_accepted(tenant):
    answer, _, body = request("GET", "/tenants/{tenant_id}/keys", tenant, raw=b"")
    assert answer == 200, body


def test_a_method_a_route_lacks_names_the_ones_it_has(tenant):
    from local_gateway import http_event

    claims = {"sub": "ops", "scope": "tenant-kms/operator"}
    response = serving(*PUT_KMS)(http_event("PATCH", f"/tenants/{tenant}/kms", claims=claims))
    assert response["statusCode"] == 405
    assert "allowed: GET, PUT" in response["body"]
    assert response["headers"]["Allow"] == "GET, PUT"


UNWRAP_RULE = ["version must be a whole number from 1 to 1000000000"]
# id: (function, sample, changes, fragments the message holds)
INVOKE_CASES = {
    "unwrap extra field": ("unwrap", "unwrap", {"admin": True}, ['"admin"', "accepted fields: tenant_id, version"]),
    "unwrap version 1.0": ("unwrap", "unwrap", {"version": 1.0}, UNWRAP_RULE),
    "unwrap version as string": ("unwrap", "unwrap", {"version": "1"}, UNWRAP_RULE),
    "unwrap version zero": ("unwrap", "unwrap", {"version": 0}, UNWRAP_RULE),
    "unwrap version huge": ("unwrap", "unwrap", {"version": 10**42}, UNWRAP_RULE),
    "unwrap version boolean": ("unwrap", "unwrap", {"version": True}, UNWRAP_RULE),
    "unwrap tenant with slash": ("unwrap", "unwrap", {"tenant_id": "a/b"}, ["tenant_id must be 1-64 letters"]),
    "data unknown op": ("tenant_data", "tenant_data_put", {"op": "patch"}, ["op must be one of put, get, delete"]),
    "data put without value": (
        "tenant_data",
        "tenant_data_get",
        {"op": "put"},
        ["payload needs value_b64", "standard base64"],
    ),
    "data get with value": ("tenant_data", "tenant_data_get", {"value_b64": "AA=="}, ["value_b64", "op put only"]),
    "data bad base64": ("tenant_data", "tenant_data_put", {"value_b64": "abc"}, ["value_b64", "padded with ="]),
    "data name with a lone surrogate": (
        "tenant_data",
        "tenant_data_put",
        {"name": "db-\ud800-password"},
        ["name must be Unicode text", "lone surrogate"],
    ),
    "data name with a control character": (
        "tenant_data",
        "tenant_data_put",
        {"name": "a\nb"},
        ["name must be 1-255 characters", "without control characters"],
    ),
    "data value too large": (
        "tenant_data",
        "tenant_data_put",
        {"value_b64": b64(b"x" * (256 * 1024 + 1))},
        ["value_b64 decodes to more than 262144 bytes"],
    ),
}


@pytest.mark.parametrize("case", list(INVOKE_CASES), ids=list(INVOKE_CASES))
def test_direct_invoke_refusals_say_what_is_accepted(tenant, case):
    function, sample_name, changes, says = INVOKE_CASES[case]
    before = snapshot_tables(TABLES)
    event = invoke_sample(sample_name, tenant)
    event.update(changes)
    answer = invoked(function)(event)
    assert answer["error"]["code"] == "invalid_request", answer
    for fragment in says:
        assert fragment in answer["error"]["message"], answer
    for fragment in ["{'", "['", "must NOT", "data."]:
        assert fragment not in answer["error"]["message"], answer
    assert snapshot_tables(TABLES) == before


@pytest.mark.parametrize("payload", [[], "acme", None, 7])
def test_an_invoke_payload_that_is_not_an_object_names_the_fields(payload):
    message = invoked("unwrap")(payload)["error"]["message"]
    assert message == "payload must be a JSON object with the fields tenant_id, version"


@functools.cache
def invoked(name: str) -> Function:
    return Function(name)
