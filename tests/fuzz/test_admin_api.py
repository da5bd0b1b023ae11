"""Any request on any admin route (hostile body bytes, base64 flag, content types,
Idempotency-Key, path segments, claims) is answered with a clear 4xx or a success, as
docs/openapi.json documents the route: never a 5xx, a hang or a traceback, and a refusal
leaves every table byte-for-byte as it was, the
Idempotency-Key records included. Claims are read as the deployed API passes them
(ADMIN_AUTHORIZER=jwt) and as sam local's Lambda authorizer does (ADMIN_AUTHORIZER=lambda).

A valid Idempotency-Key sent twice by a caller who may act provisions once and answers
alike."""

from __future__ import annotations

import functools
import json
import os
import uuid
from unittest import mock

import pytest
import strategies
from hypothesis import event, given
from local_gateway import routes_from_template
from support import FUNCTION_DIRS, Function, assert_documented, configured_global, http_sample, structured_logs

from tenant_kms.api import ADMIN_ROUTES

RETRYABLE = {"provider_unavailable", "unavailable"}
ROUTES = {(route.method, route.path): route for route in routes_from_template()[0]}
ADMIN = [pytest.param(ROUTES[key], id=f"{key[0]} {key[1]}") for key in ADMIN_ROUTES]
AUTHORIZERS = ("jwt", "lambda")


@functools.cache
def serving(logical_id: str, authorizer: str = "jwt", instance: int = 0) -> Function:
    """Warm instances per function and ADMIN_AUTHORIZER, as Lambda keeps them between requests."""
    by_logical_id = {logical: name for name, logical in FUNCTION_DIRS.items()}
    with mock.patch.dict(os.environ, {"ADMIN_AUTHORIZER": authorizer}):
        return Function(by_logical_id[logical_id])


def answer_is_clear(watch, function: Function, request: dict) -> None:
    with structured_logs() as logs:
        response = function(request)
    watch.logs_are_clean(logs.getvalue())
    status = response["statusCode"]
    body = json.loads(response["body"]) if response.get("body") else None
    if all((request.get("pathParameters") or {}).values()):  # API Gateway routes no empty segment
        assert_documented(request, response)
    # A well-formed BYOK config whose key cannot be reached is not bad input: it is the one
    # 5xx allowed, and it too must change nothing.
    assert 200 <= status < 500 or (status == 503 and body["error"]["code"] in RETRYABLE), response
    if status >= 400:
        assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    event(f"{status} {body['error']['code'] if status >= 400 else ''}")  # --hypothesis-show-statistics
    watch.tables_kept(f"{status} {body['error']['code']}" if status >= 400 else None)


@pytest.mark.parametrize("authorizer", AUTHORIZERS)
@pytest.mark.parametrize("route", ADMIN)
@given(data=strategies.st.data())
def test_any_request_from_anyone(watch, route, authorizer, data):
    request = data.draw(strategies.admin_requests(route, authorizer=authorizer))
    answer_is_clear(watch, serving(route.function, authorizer), request)


@pytest.mark.parametrize("route", ADMIN)
@given(data=strategies.st.data())
def test_any_request_from_a_caller_who_may_act(watch, route, data):
    """Past authentication and authorisation: the body, headers and path are what is hostile.
    Which authorizer passed the claims is drawn too: it only decides where they sit."""
    authorizer = data.draw(strategies.st.sampled_from(AUTHORIZERS))
    request = data.draw(strategies.admin_requests(route, authorised=True, authorizer=authorizer))
    answer_is_clear(watch, serving(route.function, authorizer), request)


# Tenants of their own, so the versions each key provisions can be counted exactly.
KEYED = (f"fuzz-keyed-{uuid.uuid4().hex[:8]}", f"fuzz-keyed-other-{uuid.uuid4().hex[:6]}")
# Where a retry may land: the same warm instance, another one, one reading the Lambda authorizer's claims.
PROVISIONERS = [("jwt", 0), ("jwt", 1), ("lambda", 0)]


@pytest.fixture(scope="module")
def first_answers(dynamodb_local) -> dict[tuple[str, str], tuple[int, str]]:
    """Each (tenant, Idempotency-Key) sent so far and the answer it got first."""
    for tenant in KEYED:
        configured_global(tenant)
    return {}


def keyed_provision(tenant: str, idempotency_key: str, authorizer: str) -> dict:
    """POST …/keys by the tenant's admin, logged in just now, with the header as written."""
    event = http_sample("provision_post", tenant)
    event["headers"]["idempotency-key"] = idempotency_key
    event["requestContext"]["authorizer"] = strategies.placed(
        event["requestContext"]["authorizer"]["jwt"]["claims"], authorizer
    )
    return event


def versions(tenant: str) -> list[int]:
    status, body = serving("ProvisionFunction").http(http_sample("provision_list", tenant))
    assert status == 200, body
    return [version["version"] for version in body["versions"]]


@given(
    key=strategies.valid_idempotency_keys,
    spellings=strategies.st.tuples(*[strategies.st.sampled_from(strategies.IDEMPOTENCY_KEY_SPELLINGS)] * 2),
    tenant=strategies.st.sampled_from(KEYED),
    provisioners=strategies.st.tuples(*[strategies.st.sampled_from(PROVISIONERS)] * 2),
)
def test_the_same_idempotency_key_twice_provisions_once_and_answers_alike(
    watch, first_answers, key, spellings, tenant, provisioners
):
    """However the key is written and whichever instance serves the retry: one version, and
    the retry answers the first answer byte for byte. Keys repeat across examples and
    tenants: a key the tenant sent before answers what it answered then and provisions
    nothing; another tenant's use of it is that tenant's own."""
    other = KEYED[1 - KEYED.index(tenant)]
    before, others = versions(tenant), versions(other)
    with structured_logs() as logs:
        first, retry = (
            serving("ProvisionFunction", authorizer, instance)(
                keyed_provision(tenant, spelling.format(key), authorizer)
            )
            for spelling, (authorizer, instance) in zip(spellings, provisioners, strict=True)
        )
    watch.logs_are_clean(logs.getvalue())

    assert first["statusCode"] == 201, first
    assert (retry["statusCode"], retry["body"], retry["headers"]) == (
        first["statusCode"],
        first["body"],
        first["headers"],
    )
    sent_before = (tenant, key) in first_answers
    event("key sent before" if sent_before else "new key")  # --hypothesis-show-statistics
    assert (first["statusCode"], first["body"]) == first_answers.setdefault((tenant, key), (201, first["body"]))
    provisioned = [] if sent_before else [json.loads(first["body"])["version"]]
    assert versions(tenant) == before + provisioned
    assert provisioned in ([], [max(before) + 1])
    assert versions(other) == others
    watch.tables_kept(None)
