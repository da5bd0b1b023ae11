"""Admin routes keep to their deadline (25 s from the request's start, whatever the
function's Timeout): every table call gets at most what is left of it, and a route whose
budget runs out answers 503 with Retry-After, leaving the tables as they were or in a state
the next call completes. Time passes on an injected clock: a slow wire (every answer takes
its seconds on that clock) stands between botocore and DynamoDB Local."""

from __future__ import annotations

import base64
import json
import secrets
import time

import boto3
import pytest
from faults import SlowWire
from support import Clock, Function, http_sample, snapshot_tables
from testenv import TENANT_TABLES

from kms_wrapping import ProviderUnavailable, WrapContext
from kms_wrapping.deadline import Deadline, running_until
from tenant_kms.providers import build_registry
from tenant_kms.settings import Settings

DEADLINE = 25  # AdminRouteDeadlineSeconds' default


@pytest.fixture(scope="module")
def warm() -> dict[str, Function]:
    """One warm instance of each function the tests call (new instances cost seconds)."""
    return {name: Function(name) for name in ("configure", "provision")}


def answer_on_slow_tables(warm: dict[str, Function], name: str, event: dict, seconds: float, monkeypatch) -> dict:
    """``event`` through the warm function while every table answer takes ``seconds`` of an
    injected clock (backoff waits pass on it too); its response, once the route is seen to
    have kept to its deadline."""
    clock = Clock(time.time())
    function = warm[name]
    function.service.clock = clock
    function.service.backoff.sleep = clock.advance
    wire = SlowWire(clock, seconds).install(monkeypatch)
    start = clock()
    # The function may run for 15 minutes: the route still keeps to its own 25 s.
    response = function(event, timeout_ms=900_000)
    wire.on = False
    wire.assert_kept_to(start + DEADLINE)
    return response


# A global configure makes three table calls (read, one transaction, read back): at 9 s each
# the read back is cut, at 13 s the transaction (DynamoDB applied it, its answer came too
# late), at 40 s the first read; at 3 s it all fits.
@pytest.mark.parametrize(("seconds", "status"), [(3, 200), (9, 503), (13, 503), (40, 503)])
def test_a_configure_on_slow_tables_answers_by_its_deadline(warm, tenant_id, monkeypatch, seconds, status):
    before = snapshot_tables(TENANT_TABLES)

    response = answer_on_slow_tables(
        warm, "configure", http_sample("configure_put_global", tenant_id), seconds, monkeypatch
    )

    assert response["statusCode"] == status, response
    if status == 200:
        return
    assert json.loads(response["body"])["error"]["code"] == "unavailable"
    assert response["headers"]["Retry-After"] == "1"
    # Cut off anywhere: the tables are as they were (cut before the transaction was sent), or
    # hold the whole change and the next configure completes it.
    if seconds == 40:
        assert snapshot_tables(TENANT_TABLES) == before
        return
    assert snapshot_tables(TENANT_TABLES) != before
    warm["configure"].service.clock = time.time
    status, view = warm["configure"].http(http_sample("configure_put_global", tenant_id))
    assert status == 200 and view["status"] == "active", view
    versions = warm["provision"].http(http_sample("provision_list", tenant_id))[1]["versions"]
    assert [v["status"] for v in versions] == ["active"], versions


# A provision reads the config and the active version, then writes the new version in one
# transaction: at 10 s each the transaction goes out at 20 s and its answer comes too late
# (DynamoDB applied it), at 30 s the first read is cut (a configure that fits its budget is above).
@pytest.mark.parametrize("seconds", [10, 30])
def test_a_provision_on_slow_tables_answers_by_its_deadline(warm, tenant_id, monkeypatch, seconds):
    warm["configure"].service.clock = time.time
    assert warm["configure"].http(http_sample("configure_put_global", tenant_id))[0] == 200
    before = snapshot_tables(TENANT_TABLES)

    response = answer_on_slow_tables(warm, "provision", http_sample("provision_post", tenant_id), seconds, monkeypatch)

    assert response["statusCode"] == 503, response
    assert response["headers"]["Retry-After"] == "1"
    versions = warm["provision"].http(http_sample("provision_list", tenant_id))[1]["versions"]
    if seconds == 30:
        assert snapshot_tables(TENANT_TABLES) == before
        assert [v["status"] for v in versions] == ["active"]
        return
    # Whole or not at all: version 2 active, version 1 retired, the config pointing at 2.
    assert sorted((v["version"], v["status"]) for v in versions) == [(1, "retired"), (2, "active")], versions
    assert warm["configure"].http(http_sample("configure_get", tenant_id))[1]["active_version"] == 2


def test_reading_the_master_key_secret_keeps_to_the_deadline(tenant_id, moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    arn = boto3.client("secretsmanager").create_secret(Name=f"mk-{tenant_id}", SecretString=secret)["ARN"]
    tables = {"CONFIG_TABLE": "c", "KEY_VERSION_TABLE": "k", "TENANT_DATA_TABLE": "d"}
    wrapper = build_registry(Settings.from_env({**tables, "MASTER_KEY_SECRET_ID": arn})).wrapper_for(
        "global", {}, tenant_id
    )
    clock = Clock()
    wire = SlowWire(clock, 100, frozenset({"GetSecretValue"})).install(monkeypatch)
    start = clock()

    with running_until(Deadline(at=start + DEADLINE, clock=clock)), pytest.raises(ProviderUnavailable):
        wrapper.wrap(secrets.token_bytes(32), WrapContext(tenant_id, 1))

    assert [action for action, *_ in wire.sent] == ["GetSecretValue"]
    wire.assert_kept_to(start + DEADLINE)
