"""Rewrap is resumable, idempotent, safe to run concurrently, and a caller's write wins (docs/LIFECYCLE.md rule 7)."""

from __future__ import annotations

import os
import threading
import time

from deployment import own_tables
from support import (
    JOB_TIMEOUT_MS,
    Function,
    b64,
    http_sample,
    invoke_sample,
    job_unit,
    partition_items,
    read_all,
    record_counts,
    records_on_a_retired_version,
    run_job,
    run_rewrap,
)

from tenant_kms.jobs import LEASE_SECONDS


def test_rewrap_killed_midway_resumes_without_losing_a_record(tenant_id):
    values = records_on_a_retired_version(tenant_id, 30)
    rewrap = Function("rewrap")
    real_move = rewrap.module.records._move

    def crash_after_ten(active, moves, job_id=None):
        real_move(active, moves[:10], job_id)  # one transaction of 10 records lands
        raise RuntimeError("instance killed")

    rewrap.module.records._move = crash_after_ten

    # When the job's first batch dies after 10 records
    status, job = rewrap.http(http_sample("rewrap_post", tenant_id))
    assert status == 202
    assert rewrap(job_unit(job))["error"]["code"] == "internal_error"

    # Then 10 records moved, 20 did not, and every one still reads the same
    state = read_all(tenant_id, values)
    assert sorted(v for _, v in state.values()) == [1] * 20 + [2] * 10
    assert {name: value for name, (value, _) in state.items()} == values
    assert record_counts(tenant_id) == {1: 20, 2: 10}

    # When a fresh instance takes the job over once the dead worker's lease ran out
    taker = Function("rewrap")
    taker.service.clock = lambda: time.time() + LEASE_SECONDS + 1
    done = run_job(taker, job)

    # Then every record is on version 2 with its plaintext, each counted once
    assert (done["status"], done["migrated"], done["remaining"]) == ("succeeded", 30, 0)
    assert read_all(tenant_id, values) == {name: (value, 2) for name, value in values.items()}
    assert record_counts(tenant_id) == {1: 0, 2: 30}

    # and another rewrap finds nothing to do
    again = run_rewrap(tenant_id)
    assert (again["status"], again["migrated"]) == ("succeeded", 0)


def test_records_written_during_the_rewrap_keep_the_callers_values(tenant_id):
    values = records_on_a_retired_version(tenant_id, 5)
    rewrap, caller = Function("rewrap"), Function("tenant_data")
    real_move = rewrap.module.records._move
    targets = ["rec-001", "rec-003"]
    transactions = []

    def callers_write_first(active, moves, job_id=None):
        if not transactions:
            # The callers' writes land between the rewrap's read and its transaction.
            for name in targets:
                put = invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(b"caller's value"))
                assert caller(put)["version"] == 2
        transactions.append([record.name for record, _ in moves])
        return real_move(active, moves, job_id)

    rewrap.module.records._move = callers_write_first
    job = run_rewrap(tenant_id, rewrap)
    assert (job["status"], job["migrated"], job["skipped"], job["remaining"]) == ("succeeded", 3, 2, 0)

    # The five went in one transaction; it was cancelled and only the callers' two were dropped
    assert transactions == [sorted(values)]
    state = read_all(tenant_id, values)
    assert all(state[name] == (b"caller's value", 2) for name in targets)
    assert {n: v for n, v in state.items() if n not in targets} == {
        n: (v, 2) for n, v in values.items() if n not in targets
    }
    assert record_counts(tenant_id) == {1: 0, 2: 5}


def test_concurrent_workers_move_each_record_once(tenant_id, monkeypatch):
    monkeypatch.setenv("REWRAP_BATCH_RECORDS", "5")
    values = records_on_a_retired_version(tenant_id, 40)
    workers = [Function("rewrap") for _ in range(3)]
    job = workers[0].http(http_sample("rewrap_post", tenant_id))[1]
    start = threading.Barrier(len(workers))
    finished = []

    def work(function: Function) -> None:
        start.wait()
        view = job
        while view["status"] == "running":
            view = function(job_unit(job), timeout_ms=JOB_TIMEOUT_MS)
            time.sleep(0.01)  # another worker may hold the batch: let it run
        finished.append(view)

    threads = [threading.Thread(target=work, args=(f,)) for f in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    final = workers[0](job_unit(job))
    assert (final["status"], final["migrated"], final["remaining"]) == ("succeeded", 40, 0), finished
    assert read_all(tenant_id, values) == {name: (value, 2) for name, value in values.items()}
    assert record_counts(tenant_id) == {1: 0, 2: 40}


def test_scheduled_rewrap_covers_every_pending_tenant(tenant_id, monkeypatch, queues):
    own_tables(monkeypatch)  # the sweep walks every tenant: only this test's
    values = records_on_a_retired_version(tenant_id, 3)
    other = f"{tenant_id}-b"
    other_values = records_on_a_retired_version(other, 2)
    settled = f"{tenant_id}-c"
    records_on_a_retired_version(settled, 1)
    assert run_rewrap(settled)["status"] == "succeeded"

    # When the schedule's sweep visits every tenant, and the jobs it started run through the job queue
    status = queues.rewrap_schedule()

    # Then the tenants with pending records each got a job, run as the schedule, which moved them
    assert status["rewrap"]["finished"] and status["rewrap"]["totals"] == {"job_started": 2, "nothing_pending": 1}
    for tenant in (tenant_id, other):
        (job,) = [j for j in jobs_of(tenant) if j.get("actor", {}).get("S") == "schedule"]
        assert job["status"]["S"] == "succeeded"
    assert read_all(tenant_id, values) == {n: (v, 2) for n, v in values.items()}
    assert read_all(other, other_values) == {n: (v, 2) for n, v in other_values.items()}


def jobs_of(tenant_id: str) -> list[dict]:
    return partition_items(os.environ["JOB_TABLE"], tenant_id)
