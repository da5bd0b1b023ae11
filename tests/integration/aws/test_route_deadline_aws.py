"""A slow AWS KMS (moto behind a slow wire on an injected clock) never holds an admin route
past its 25 s deadline, however many attempts and however long a read timeout the settings
allow: each attempt gets at most what is left, the route answers 503 provider_unavailable
with Retry-After, and nothing was written. A direct invoke keeps to the time Lambda leaves it."""

from __future__ import annotations

import json
import time

import pytest
from faults import SlowWire
from support import Clock, Function, http_sample, invoke_sample, snapshot_tables
from testenv import TENANT_TABLES
from world import configure

DEADLINE = 25  # AdminRouteDeadlineSeconds' default
KMS_CALLS = frozenset({"Encrypt", "Decrypt"})


@pytest.mark.parametrize(
    ("read_timeout", "attempts", "kms_seconds"),
    [
        (5, 10, 6),  # every attempt times out; ten would take 50 s
        (60, 1, 100),  # one attempt whose read timeout alone passes the deadline
        (10, 4, 9),  # the probe's two calls answer; the new version's wrap has 7 s left
    ],
)
def test_a_configure_waiting_on_a_slow_kms_answers_by_its_deadline(
    tenant_id, customer, monkeypatch, read_timeout, attempts, kms_seconds
):
    monkeypatch.setenv("KMS_READ_TIMEOUT_SECONDS", str(read_timeout))
    monkeypatch.setenv("KMS_MAX_ATTEMPTS", str(attempts))
    clock = Clock(time.time())
    function = Function("configure")
    function.service.clock = clock
    before = snapshot_tables(TENANT_TABLES)
    wire = SlowWire(clock, kms_seconds, KMS_CALLS).install(monkeypatch)
    start = clock()

    body = {"provider": "customer_kms_aws", "config": customer.config()}
    response = function(http_sample("configure_put_global", tenant_id, body=body))
    wire.on = False

    wire.assert_kept_to(start + DEADLINE)
    assert response["statusCode"] == 503, response
    assert json.loads(response["body"])["error"]["code"] == "provider_unavailable"
    assert response["headers"]["Retry-After"] == "5"
    assert snapshot_tables(TENANT_TABLES) == before
    kms = [(action, granted) for action, _, granted in wire.sent if action in KMS_CALLS]
    assert kms and all(granted <= read_timeout for _, granted in kms)
    assert len(kms) > 1 or kms[0][1] < read_timeout  # the budget, not the setting, cut it


def test_a_direct_unwrap_keeps_to_the_time_lambda_leaves_it(tenant_id, customer, monkeypatch):
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    monkeypatch.setenv("KMS_READ_TIMEOUT_SECONDS", "60")
    unwrap = Function("unwrap")
    clock = Clock(time.time())
    unwrap.service.clock = clock
    wire = SlowWire(clock, 100, KMS_CALLS).install(monkeypatch)
    start = clock()

    answer = unwrap(invoke_sample("unwrap", tenant_id), timeout_ms=10_000)

    assert answer["error"]["code"] == "provider_unavailable", answer
    wire.assert_kept_to(start + 10)
    assert next(granted for action, _, granted in wire.sent if action == "Decrypt") <= 9.5
