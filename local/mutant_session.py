"""pytest plugin of `make mutate` (the staged tree's root conftest.py): in every session mutmut
starts, the tests that reach the mutant run quickest first (mutmut stops at the first failure,
so a killed mutant costs one short test), on tables of the session's own in the run's one
DynamoDB Local (no scan meets another mutant's rows; dropped at the end)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path

# The settings that name each table (tests/testenv.py sets them once per process).
TABLE_SETTINGS = {
    "CONFIG_TABLE": "TenantConfigTable",
    "KEY_VERSION_TABLE": "KeyVersionTable",
    "TENANT_DATA_TABLE": "TenantDataTable",
    "IDEMPOTENCY_TABLE": "IdempotencyTable",
    "JOB_TABLE": "JobTable",
    "SWEEP_TABLE": "SweepTable",
}


def pytest_collection_modifyitems(session, config, items):
    import testenv

    run = uuid.uuid4().hex[:8]
    for logical_id, name in testenv.TABLES.items():
        testenv.TABLES[logical_id] = f"{name.rsplit('-', 1)[0]}-{run}"
    testenv.TENANT_TABLES.update({k: testenv.TABLES[k] for k in testenv.TENANT_TABLES})
    assert set(TABLE_SETTINGS.values()) == set(testenv.TABLES), "tests/testenv.py's tables changed"
    for setting, logical_id in TABLE_SETTINGS.items():
        os.environ[setting] = testenv.TABLES[logical_id]
    stats = Path("mutmut-stats.json")  # mutmut runs the tests from its mutants/ folder
    if stats.exists():
        took = json.loads(stats.read_text())["duration_by_test"]
        items.sort(key=lambda item: took.get(item.nodeid, 0.0))


def pytest_sessionfinish(session, exitstatus):
    if "DYNAMODB_LOCAL_ENDPOINT" not in os.environ or "AWS_ENDPOINT_URL_DYNAMODB" not in os.environ:
        return  # no shared DynamoDB Local (a session's own is gone with its tables), or no table made
    import boto3
    import testenv

    client = boto3.client("dynamodb")
    for name in testenv.TABLES.values():
        # A session that failed before its tables were made has none to drop.
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_table(TableName=name)
