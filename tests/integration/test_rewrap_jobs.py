"""Rewrap jobs: POST answers 202 with a job and moves nothing itself; the job's unit of work
advances it one batch at a time, at the configured rate, under a lease a dead worker loses."""

from __future__ import annotations

import json
import os
import secrets
import threading

import boto3
import pytest
from support import (
    JOB_TIMEOUT_MS,
    Clock,
    Function,
    b64,
    http_sample,
    invoke_sample,
    job_unit,
    partition_items,
    purge_job,
    read_all,
    record_counts,
    records_on_a_retired_version,
    rewrap_job_get,
    run_job,
    run_purge,
    snapshot_tables,
)
from testenv import TABLES

from tenant_kms.jobs import LEASE_SECONDS

BATCH = 4


@pytest.fixture
def rate(monkeypatch):
    """Small batches; the interval is each test's own."""
    monkeypatch.setenv("REWRAP_BATCH_RECORDS", str(BATCH))

    def interval(seconds: int) -> None:
        monkeypatch.setenv("REWRAP_BATCH_INTERVAL_SECONDS", str(seconds))

    return interval


def job_get(function: Function, tenant_id: str, job_id: str, **kwargs) -> tuple[int, dict]:
    return function.http(rewrap_job_get(tenant_id, job_id, **kwargs))


def test_start_answers_202_with_the_job_and_moves_nothing_then_batches_finish_it(tenant_id, rate):
    rate(0)
    values = records_on_a_retired_version(tenant_id, 10)
    rewrap = Function("rewrap")

    # When the rewrap is started
    response = rewrap(http_sample("rewrap_post", tenant_id))

    # Then it answers 202 with a running job that has moved nothing yet, and where to poll it
    job = json.loads(response["body"])
    assert response["statusCode"] == 202
    assert response["headers"]["Location"] == f"/tenants/{tenant_id}/rewrap/{job['job_id']}"
    assert set(job) == {
        "job_id",
        "tenant_id",
        "status",
        "migrated",
        "skipped",
        "remaining",
        "started_at",
        "updated_at",
        "finished_at",
        "error",
    }
    assert (job["status"], job["migrated"], job["remaining"], job["finished_at"]) == ("running", 0, 10, None)
    assert {version for _, version in read_all(tenant_id, values).values()} == {1}
    assert job_get(Function("rewrap"), tenant_id, job["job_id"]) == (200, job)

    # When its unit of work runs: one batch each
    first = rewrap(job_unit(job))
    assert (first["status"], first["migrated"], first["remaining"]) == ("running", BATCH, 10 - BATCH)
    done = run_job(rewrap, first)

    # Then it finished, every record on the active version, counted once
    assert (done["status"], done["migrated"], done["skipped"], done["remaining"]) == ("succeeded", 10, 0, 0)
    assert done["finished_at"] is not None and done["error"] is None
    assert read_all(tenant_id, values) == {n: (v, 2) for n, v in values.items()}
    assert record_counts(tenant_id) == {1: 0, 2: 10}
    assert job_get(Function("rewrap"), tenant_id, done["job_id"]) == (200, done)

    # A later start is a new job, with nothing left to move
    status, again = Function("rewrap").http(http_sample("rewrap_post", tenant_id))
    assert status == 202 and again["job_id"] != job["job_id"] and again["remaining"] == 0


def test_the_location_keeps_a_named_stage(tenant_id, rate):
    records_on_a_retired_version(tenant_id, 1)
    event = http_sample("rewrap_post", tenant_id)
    event["rawPath"] = f"/prod/tenants/{tenant_id}/rewrap"
    event["requestContext"]["stage"] = "prod"
    response = Function("rewrap")(event)
    job_id = json.loads(response["body"])["job_id"]
    assert response["headers"]["Location"] == f"/prod/tenants/{tenant_id}/rewrap/{job_id}"


def test_two_starts_racing_make_one_job(tenant_id, rate):
    records_on_a_retired_version(tenant_id, 2)
    starters = [Function("rewrap") for _ in range(4)]
    barrier = threading.Barrier(len(starters))
    answers = []

    def start(function: Function) -> None:
        barrier.wait()
        answers.append(function.http(http_sample("rewrap_post", tenant_id)))

    threads = [threading.Thread(target=start, args=(f,)) for f in starters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [status for status, _ in answers] == [202] * 4
    assert len({job["job_id"] for _, job in answers}) == 1
    assert len(jobs_of(tenant_id)) == 1
    # and a start while it runs answers it too
    assert Function("rewrap").http(http_sample("rewrap_post", tenant_id))[1]["job_id"] == answers[0][1]["job_id"]


def jobs_of(tenant_id: str) -> list[dict]:
    return [
        item
        for item in partition_items(TABLES["JobTable"], tenant_id)
        if not item["job_id"]["S"].startswith("running#")
    ]


def test_a_worker_dying_mid_batch_is_taken_over_after_its_lease_and_nothing_is_lost_or_counted_twice(tenant_id, rate):
    rate(0)
    values = records_on_a_retired_version(tenant_id, 10)
    clock = Clock()
    dying = Function("rewrap")
    dying.service.clock = clock
    job = dying.http(http_sample("rewrap_post", tenant_id))[1]
    real_move = dying.module.records._move

    def killed_after_two(active, moves, job_id=None):
        real_move(active, moves[:2], job_id)  # a transaction of 2 of the batch's records lands
        raise RuntimeError("instance killed")

    dying.module.records._move = killed_after_two

    # When the worker dies after moving 2 records of its batch
    assert dying(job_unit(job))["error"]["code"] == "internal_error"
    assert sorted(v for _, v in read_all(tenant_id, values).values()) == [1] * 8 + [2] * 2

    # Then while its lease holds, another worker leaves the job alone
    taker = Function("rewrap")
    taker.service.clock = clock
    clock.advance(LEASE_SECONDS - 1)
    held = taker(job_unit(job))
    assert (held["status"], held["migrated"]) == ("running", 0)

    # and once it expired, takes it over from the batch's start
    clock.advance(2)
    resumed = taker(job_unit(job))
    assert (resumed["migrated"], resumed["remaining"]) == (BATCH, 10 - BATCH)
    done = run_job(taker, resumed)

    # Then every record moved once and is counted once
    assert (done["status"], done["migrated"], done["skipped"], done["remaining"]) == ("succeeded", 10, 0, 0)
    assert read_all(tenant_id, values) == {n: (v, 2) for n, v in values.items()}
    assert record_counts(tenant_id) == {1: 0, 2: 10}


def test_batches_keep_the_rate_on_the_injected_clock(tenant_id, rate):
    rate(5)
    records_on_a_retired_version(tenant_id, 10)
    clock = Clock()
    rewrap = Function("rewrap")
    rewrap.service.clock = clock
    job = rewrap.http(http_sample("rewrap_post", tenant_id))[1]

    migrated = []
    for step in (0, 4.999, 0.001, 3, 2, 5):  # seconds since the previous unit
        clock.advance(step)
        migrated.append(rewrap(job_unit(job))["migrated"])

    # One batch at once, then one per 5 s at most, whatever the units' timing
    assert migrated == [4, 4, 8, 8, 10, 10]
    view = rewrap(job_unit(job))
    assert view["status"] == "succeeded"


def test_a_sealed_tenant_is_refused_and_a_job_running_when_it_seals_fails_as_sealed(tenant_id, rate):
    rate(0)
    records_on_a_retired_version(tenant_id, 6)
    rewrap = Function("rewrap")
    job = rewrap.http(http_sample("rewrap_post", tenant_id))[1]
    assert rewrap(job_unit(job))["migrated"] == BATCH
    boto3.client("dynamodb").update_item(
        TableName=TABLES["TenantConfigTable"],
        Key={"tenant_id": {"S": tenant_id}},
        UpdateExpression="SET #s = :s, sealed_reason = :r",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "sealed"}, ":r": {"S": "test: key refused"}},
    )

    failed = rewrap(job_unit(job))
    assert (failed["status"], failed["error"]["code"], failed["migrated"]) == ("failed", "sealed", BATCH)
    before = snapshot_tables(TABLES)
    status, body = Function("rewrap").http(http_sample("rewrap_post", tenant_id))
    assert (status, body["error"]["code"]) == (423, "sealed")
    assert snapshot_tables(TABLES) == before


def test_erasing_the_tenant_ends_its_job(tenant_id, rate):
    rate(0)
    records_on_a_retired_version(tenant_id, 2)
    rewrap = Function("rewrap")
    job = rewrap.http(http_sample("rewrap_post", tenant_id))[1]
    assert Function("erase").http(http_sample("erase_delete", tenant_id)) == (204, None)
    ended = rewrap(job_unit(job))
    assert (ended["status"], ended["error"]["code"]) == ("failed", "not_found")
    run_purge(tenant_id, rewrap)
    gone = rewrap(job_unit(job))
    assert gone["error"]["code"] == "not_found"
    assert jobs_of(tenant_id) == []


def test_unknown_jobs_are_not_found_and_other_tenants_may_not_look(tenant_id, rate):
    records_on_a_retired_version(tenant_id, 1)
    rewrap = Function("rewrap")
    job = rewrap.http(http_sample("rewrap_post", tenant_id))[1]
    for unknown in ("0" * 32, "running#rewrap", "../keys"):
        status, body = job_get(rewrap, tenant_id, unknown)
        assert (status, body["error"]["code"]) == (404, "not_found"), unknown
    assert rewrap({"tenant_id": tenant_id, "job_id": "0" * 32})["error"]["code"] == "not_found"
    assert rewrap({"tenant_id": tenant_id, "job_id": "nope"})["error"]["code"] == "invalid_request"
    other = {"sub": "mallory", "tenant_id": "other", "scope": "tenant-kms/admin"}
    assert job_get(rewrap, tenant_id, job["job_id"], claims=other)[0] == 403
    operator = {"sub": "ops", "scope": "tenant-kms/operator"}
    assert job_get(rewrap, tenant_id, job["job_id"], claims=operator) == (200, job)


def test_a_finished_job_stays_readable_for_30_days_and_a_purge_is_no_rewrap_job(tenant_id, rate):
    """Catches a finished job's row expiring at another time than 30 days after it finished
    (README, Rewrap jobs), and an erased tenant's purge job answered by GET …/rewrap/{job_id}."""
    rate(0)
    records_on_a_retired_version(tenant_id, 2)
    clock = Clock()
    rewrap = Function("rewrap")
    rewrap.service.clock = clock
    done = run_job(rewrap, rewrap.http(http_sample("rewrap_post", tenant_id))[1])
    assert done["status"] == "succeeded"
    (row,) = [item for item in jobs_of(tenant_id) if item["job_id"]["S"] == done["job_id"]]
    assert int(row["expires_at"]["N"]) == int(clock()) + 30 * 86400

    assert Function("erase").http(http_sample("erase_delete", tenant_id)) == (204, None)
    purge = purge_job(tenant_id)
    status, body = job_get(Function("rewrap"), tenant_id, purge["job_id"])
    assert (status, body["error"]["code"]) == (404, "not_found")
    run_purge(tenant_id, rewrap)


def test_the_largest_records_move_in_transactions_under_4_mb(tenant_id, monkeypatch):
    """Catches a rewrap transaction past DynamoDB's 4 MB (README, Record writes and rewrap),
    and a batch that claims to examine more than one Query page (1 MB) holds: 20 records of
    the largest size a record may have, batches of up to 100."""
    monkeypatch.setenv("REWRAP_BATCH_RECORDS", "100")
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    data = Function("tenant_data")
    largest = int(os.environ.get("MAX_RECORD_BYTES", 256 * 1024))
    values = {f"rec-{i:03d}": secrets.token_bytes(largest) for i in range(20)}
    for name, value in values.items():
        assert data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))["version"] == 1
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    rewrap = Function("rewrap")
    real_move = rewrap.module.records._move
    sizes, moved = [], []

    def move(active, moves, job_id=None):
        sizes.append(sum(len(ciphertext) for _, ciphertext in moves))
        moved.extend(record.name for record, _ in moves)
        return real_move(active, moves, job_id)

    rewrap.module.records._move = move
    job = rewrap.http(http_sample("rewrap_post", tenant_id))[1]
    first = rewrap(job_unit(job), timeout_ms=JOB_TIMEOUT_MS)
    done = run_job(rewrap, first)

    # A batch examines one Query page at most (1 MB: a few of these records), however many
    # records it may take; every transaction stays under 4 MB, and every record moved once
    assert 0 < first["migrated"] < 1024 * 1024 // largest + 1
    assert (done["status"], done["migrated"], done["remaining"]) == ("succeeded", 20, 0)
    assert max(sizes) < 4_000_000 and sorted(moved) == sorted(values)
    assert read_all(tenant_id, values) == {n: (v, 2) for n, v in values.items()}
