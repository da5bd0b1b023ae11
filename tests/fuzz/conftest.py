"""Fuzz tier: property-based tests of hostile input against the real handlers and DynamoDB Local.

Profiles (HYPOTHESIS_PROFILE chooses; "ci" by default):
- ci: derandomized, no example database. Every run, here or in CI, tries the same examples,
  so a failure is reproducible from the commit alone and the tier's cost is fixed. New
  ground is covered by the explicit hostile values in the strategies, not by luck.
- explore: random examples, ten times as many, with the local example database, for
  hunting on a workstation; a failure it finds is then pinned as an explicit case.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import strategies
from hypothesis import HealthCheck, settings
from support import snapshot_tables
from testenv import TABLES

# A generous bound per example: a hang or a pathological slow path fails the test, a busy
# 2-core machine does not.
DEADLINE = timedelta(seconds=10)
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=DEADLINE,
    suppress_health_check=SUPPRESSED,
    print_blob=True,
)
settings.register_profile("explore", max_examples=1000, deadline=DEADLINE, suppress_health_check=SUPPRESSED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class Watch:
    """What each answer may leave behind: logs that encode and hold no traceback, and, after a
    refusal, the tables exactly as the previous request left them."""

    def __init__(self) -> None:
        self.last = snapshot_tables(TABLES)

    def logs_are_clean(self, logs: str) -> None:
        logs.encode("utf-8")  # what Lambda does with every line it ships
        assert "Traceback" not in logs and "unhandled error" not in logs, logs[-3000:]

    def tables_kept(self, refused: str | None) -> None:
        after = snapshot_tables(TABLES)
        if refused:
            assert after == self.last, f"{refused} changed the tables"
        self.last = after


@pytest.fixture(scope="module")
def watch(dynamodb_local) -> Watch:
    """strategies.TENANT on the global wrap with a retired version 1, an active version 2 and
    a record, so fuzzed operations reach the code that changes things."""
    from support import Function, http_sample, invoke_sample, purge_job, run_purge

    if purge_job(strategies.TENANT) is not None:
        run_purge(strategies.TENANT)  # an earlier module's fuzzed erase answered before its purge ran
    assert Function("configure").http(http_sample("configure_put_global", strategies.TENANT))[0] == 200
    assert Function("provision").http(http_sample("provision_post", strategies.TENANT))[0] == 201
    assert "version" in Function("tenant_data")(invoke_sample("tenant_data_put", strategies.TENANT))
    return Watch()
