"""Rewrap is resumable, idempotent, safe to run concurrently, and a caller's write wins (rule 7)."""

from __future__ import annotations

import base64
import os
import threading

from deployment import own_tables
from support import JOB_TIMEOUT_MS, Function, b64, http_sample, invoke_sample, sample


def given_records_on_a_retired_version(tenant_id: str, count: int) -> dict[str, bytes]:
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    data = Function("tenant_data")
    values = {f"rec-{i:03d}": os.urandom(32) for i in range(count)}
    for name, value in values.items():
        assert data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))["version"] == 1
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    return values


def read_all(tenant_id: str, names) -> dict[str, tuple[bytes, int]]:
    data = Function("tenant_data")
    result = {}
    for name in names:
        got = data(invoke_sample("tenant_data_get", tenant_id, name=name))
        result[name] = (base64.b64decode(got["value_b64"]), got["version"])
    return result


def record_counts(tenant_id: str) -> dict[int, int]:
    versions = Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]
    return {v["version"]: v["records"] for v in versions}


def test_rewrap_killed_midway_resumes_without_losing_a_record(tenant_id):
    values = given_records_on_a_retired_version(tenant_id, 30)
    rewrap = Function("rewrap")
    real_move = rewrap.module.records._move

    def crash_after_ten(active, moves):
        real_move(active, moves[:10])  # one transaction of 10 records lands
        raise RuntimeError("instance killed")

    rewrap.module.records._move = crash_after_ten

    # When the first run dies after 10 records
    status, body = rewrap.http(http_sample("rewrap_post", tenant_id))
    assert (status, body["error"]["code"]) == (500, "internal_error")

    # Then 10 records moved, 20 did not, and every one still reads the same
    state = read_all(tenant_id, values)
    assert sorted(v for _, v in state.values()) == [1] * 20 + [2] * 10
    assert {name: value for name, (value, _) in state.items()} == values
    assert record_counts(tenant_id) == {1: 20, 2: 10}

    # When it runs again, on a fresh instance
    status, progress = Function("rewrap").http(http_sample("rewrap_post", tenant_id))
    assert status == 202 and progress["migrated"] == 20 and progress["complete"] is True

    # Then every record is on version 2 with its plaintext
    assert read_all(tenant_id, values) == {name: (value, 2) for name, value in values.items()}
    assert record_counts(tenant_id) == {1: 0, 2: 30}

    # and a third run finds nothing to do
    status, progress = Function("rewrap").http(http_sample("rewrap_post", tenant_id))
    assert (status, progress["migrated"], progress["complete"]) == (202, 0, True)


def test_records_written_during_the_rewrap_keep_the_callers_values(tenant_id):
    values = given_records_on_a_retired_version(tenant_id, 5)
    rewrap, caller = Function("rewrap"), Function("tenant_data")
    real_move = rewrap.module.records._move
    targets = ["rec-001", "rec-003"]
    transactions = []

    def callers_write_first(active, moves):
        if not transactions:
            # The callers' writes land between the rewrap's read and its transaction.
            for name in targets:
                put = invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(b"caller's value"))
                assert caller(put)["version"] == 2
        transactions.append([record.name for record, _ in moves])
        return real_move(active, moves)

    rewrap.module.records._move = callers_write_first
    status, progress = rewrap.http(http_sample("rewrap_post", tenant_id))
    assert status == 202 and progress["migrated"] == 3 and progress["skipped"] == 2 and progress["complete"] is True

    # The five went in one transaction; it was cancelled and only the callers' two were dropped
    assert transactions == [sorted(values)]
    state = read_all(tenant_id, values)
    assert all(state[name] == (b"caller's value", 2) for name in targets)
    assert {n: v for n, v in state.items() if n not in targets} == {
        n: (v, 2) for n, v in values.items() if n not in targets
    }
    assert record_counts(tenant_id) == {1: 0, 2: 5}


def test_concurrent_rewraps_move_each_record_once(tenant_id):
    values = given_records_on_a_retired_version(tenant_id, 40)
    runners = [Function("rewrap") for _ in range(3)]
    start = threading.Barrier(len(runners))
    answers = []

    def run(function: Function) -> None:
        start.wait()
        answers.append(function.http(http_sample("rewrap_post", tenant_id)))

    threads = [threading.Thread(target=run, args=(f,)) for f in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(status == 202 for status, _ in answers), answers
    assert sum(body["migrated"] for _, body in answers) == 40
    assert read_all(tenant_id, values) == {name: (value, 2) for name, value in values.items()}
    assert record_counts(tenant_id) == {1: 0, 2: 40}


def test_scheduled_rewrap_covers_every_pending_tenant(tenant_id, monkeypatch):
    own_tables(monkeypatch)  # the scheduled run walks every tenant: only this test's
    values = given_records_on_a_retired_version(tenant_id, 3)
    other = f"{tenant_id}-b"
    other_values = given_records_on_a_retired_version(other, 2)
    summary = Function("rewrap")(sample("rewrap_scheduled"), timeout_ms=JOB_TIMEOUT_MS)
    done = {r["tenant_id"] for r in summary["results"]}
    assert {tenant_id, other} <= done
    assert not {tenant_id, other} & {f["tenant_id"] for f in summary["failed"]}
    assert read_all(tenant_id, values) == {n: (v, 2) for n, v in values.items()}
    assert read_all(other, other_values) == {n: (v, 2) for n, v in other_values.items()}
