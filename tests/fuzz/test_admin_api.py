"""Any request on any admin route (hostile body bytes, base64 flag, content types, path
segments, claims) is answered with a clear 4xx or a success: never a 5xx, a hang or a
traceback, and a refusal leaves every table byte-for-byte as it was. Claims are read as the
deployed API passes them (ADMIN_AUTHORIZER=jwt) and as sam local's Lambda authorizer does
(ADMIN_AUTHORIZER=lambda)."""

from __future__ import annotations

import functools
import json
import os
from unittest import mock

import pytest
import strategies
from hypothesis import event, given
from local_gateway import routes_from_template
from support import FUNCTION_DIRS, Function, structured_logs

from tenant_kms.api import ADMIN_ROUTES

RETRYABLE = {"provider_unavailable", "unavailable"}
ROUTES = {(route.method, route.path): route for route in routes_from_template()[0]}
ADMIN = [pytest.param(ROUTES[key], id=f"{key[0]} {key[1]}") for key in ADMIN_ROUTES]
AUTHORIZERS = ("jwt", "lambda")


@functools.cache
def serving(logical_id: str, authorizer: str = "jwt") -> Function:
    """One warm instance per function and ADMIN_AUTHORIZER, as Lambda keeps one between requests."""
    by_logical_id = {logical: name for name, logical in FUNCTION_DIRS.items()}
    with mock.patch.dict(os.environ, {"ADMIN_AUTHORIZER": authorizer}):
        return Function(by_logical_id[logical_id])


def answer_is_clear(watch, function: Function, request: dict) -> None:
    with structured_logs() as logs:
        response = function(request)
    watch.logs_are_clean(logs.getvalue())
    status = response["statusCode"]
    body = json.loads(response["body"]) if response.get("body") else None
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
