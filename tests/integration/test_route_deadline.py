"""Admin routes keep to their deadline (25 s from the request's start, whatever the
function's Timeout): every table call gets at most what is left of it, and a route whose
budget runs out answers 503 with Retry-After, leaving the tables as they were or in a state
the next call completes. Time passes on an injected clock: a slow wire (every answer takes
its seconds on that clock) stands between botocore and DynamoDB Local."""

from __future__ import annotations

import json
import time

import pytest
from faults import SlowWire
from support import Clock, Function, http_sample, snapshot_tables
from testenv import TENANT_TABLES

DEADLINE = 25  # AdminRouteDeadlineSeconds' default


def slow_function(name: str, clock: Clock) -> Function:
    function = Function(name)
    function.service.clock = clock
    function.service.backoff.sleep = clock.advance
    return function


# A global configure makes three table calls (read, one transaction, read back): at 9 s each
# the read back is cut, at 13 s the transaction (DynamoDB applied it, its answer came too
# late), at 40 s the first read; at 3 s it all fits.
@pytest.mark.parametrize(("seconds", "status"), [(3, 200), (9, 503), (13, 503), (40, 503)])
def test_a_configure_on_slow_tables_answers_by_its_deadline(tenant_id, monkeypatch, seconds, status):
    clock = Clock(time.time())
    configure = slow_function("configure", clock)
    before = snapshot_tables(TENANT_TABLES)
    wire = SlowWire(clock, seconds).install(monkeypatch)
    start = clock()

    # The function may run for 15 minutes: the route still keeps to its own 25 s.
    response = configure(http_sample("configure_put_global", tenant_id), timeout_ms=900_000)
    wire.on = False

    wire.assert_kept_to(start + DEADLINE)
    assert response["statusCode"] == status, response
    if status == 200:
        return
    assert json.loads(response["body"])["error"]["code"] == "unavailable"
    assert response["headers"]["Retry-After"] == "1"
    # Cut off anywhere: the tables are as they were, or the next configure completes them.
    if snapshot_tables(TENANT_TABLES) != before:
        status, view = Function("configure").http(http_sample("configure_put_global", tenant_id))
        assert status == 200 and view["status"] == "active", view
        versions = Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]
        assert [v["status"] for v in versions] == ["active"], versions

    else:
        assert seconds == 40  # cut before anything was sent that writes
