"""A key version seals at most KEY_USAGE_BUDGET records (AES-GCM with random nonces);
the write that would pass it provisions the next version and lands there."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from support import (
    Function,
    b64,
    configured_global,
    http_sample,
    invoke_sample,
    key_versions,
    read_record,
    run_rewrap,
    structured_logs,
)


def test_a_version_seals_at_most_its_budget_then_the_next_version_takes_over(tenant_id, monkeypatch, capsys):
    # Given a deployment with a budget of 3 records per key version
    monkeypatch.setenv("KEY_USAGE_BUDGET", "3")
    configured_global(tenant_id)
    data = Function("tenant_data")
    put = lambda name, value: data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))  # noqa: E731

    # When four writes arrive (the third rewrites the first record: every sealing counts)
    assert [put(n, v)["version"] for n, v in (("r1", b"one"), ("r2", b"two"), ("r1", b"one again"))] == [1, 1, 1]
    capsys.readouterr()
    with structured_logs() as logs:
        assert put("r3", b"three")["version"] == 2

    # Then version 1 is retired at its budget, version 2 is active, and everything reads
    listed = [(v["version"], v["status"], v["records"], v["encryptions"]) for v in key_versions(tenant_id)]
    assert listed == [(1, "retired", 2, 3), (2, "active", 1, 1)]
    assert read_record(data, tenant_id, "r1") == (b"one again", 1)
    assert read_record(data, tenant_id, "r2") == (b"two", 1)
    assert read_record(Function("tenant_data"), tenant_id, "r3") == (b"three", 2)
    assert '"action":"rotate_for_usage_budget"' in logs.getvalue()
    assert '"KeyVersionsRotatedForBudget":[1.0]' in capsys.readouterr().out


def test_concurrent_writers_at_the_budget_leave_one_active_version_and_lose_no_write(tenant_id, monkeypatch):
    # Given a budget of 3 and version 1 one write short of it
    monkeypatch.setenv("KEY_USAGE_BUDGET", "3")
    configured_global(tenant_id)
    setup = Function("tenant_data")
    for name in ("w0", "w1"):
        setup(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(name.encode())))
    writers = [Function("tenant_data") for _ in range(8)]
    start = threading.Barrier(len(writers))

    def write(index: int) -> dict:
        start.wait()
        name = f"c{index}"
        return writers[index](invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(name.encode())))

    # When eight writers arrive at once
    with ThreadPoolExecutor(len(writers)) as pool:
        answers = list(pool.map(write, range(len(writers))))

    # Then every write landed, versions are contiguous with exactly one active, none over budget
    assert all("error" not in a for a in answers), answers
    listed = key_versions(tenant_id)
    assert [v["version"] for v in listed] == [1, 2, 3, 4]
    assert [v["status"] for v in listed] == ["retired", "retired", "retired", "active"]
    assert [v["encryptions"] for v in listed] == [3, 3, 3, 1]
    assert sum(v["records"] for v in listed) == 10
    reader = Function("tenant_data")
    written = {"w0": 1, "w1": 1, **{a["name"]: a["version"] for a in answers}}
    assert {name: read_record(reader, tenant_id, name) for name in written} == {
        name: (name.encode(), version) for name, version in written.items()
    }


def test_the_rewrap_fills_the_active_version_to_its_budget_and_never_provisions(tenant_id, monkeypatch):
    # Given a budget of 3, four records over versions 1 and 2, and version 3 provisioned
    monkeypatch.setenv("KEY_USAGE_BUDGET", "3")
    configured_global(tenant_id)
    data = Function("tenant_data")
    values = {name: name.encode() * 3 for name in ("a", "b", "c", "d")}
    for name, value in values.items():
        data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    rewrap = Function("rewrap")

    # When the rewrap runs: version 3 takes three records, and the run stops there
    first = run_rewrap(tenant_id, rewrap)
    assert (first["migrated"], first["remaining"], first["status"]) == (3, 1, "failed")
    assert first["error"]["code"] == "conflict" and "usage budget" in first["error"]["message"]
    assert [v["version"] for v in key_versions(tenant_id)] == [1, 2, 3]

    # Then a caller's write provisions version 4, and the next run fills it up to its budget
    assert data(invoke_sample("tenant_data_put", tenant_id, name="e", value_b64=b64(b"e")))["version"] == 4
    values["e"] = b"e"
    second = run_rewrap(tenant_id, rewrap)
    assert (second["migrated"], second["status"]) == (2, "failed")
    listed = key_versions(tenant_id)
    assert [v["version"] for v in listed] == [1, 2, 3, 4]  # the migration provisioned nothing
    assert [v["status"] for v in listed] == ["retired", "retired", "retired", "active"]
    assert listed[-1]["encryptions"] == 3 and all(v["encryptions"] <= 3 for v in listed)
    assert sum(v["records"] for v in listed) == len(values)
    reader = Function("tenant_data")
    assert {name: read_record(reader, tenant_id, name)[0] for name in values} == values


def test_callers_filling_the_budget_while_a_rewrap_batch_is_under_way_never_push_the_version_past_it(
    tenant_id, monkeypatch
):
    # Given a budget of 3, records a and b on version 1, and version 2 active with room for 3
    monkeypatch.setenv("KEY_USAGE_BUDGET", "3")
    configured_global(tenant_id)
    data = Function("tenant_data")
    values = {name: name.encode() for name in ("a", "b")}
    for name, value in values.items():
        data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    rewrap = Function("rewrap")
    real_move = rewrap.module.records._move
    transactions = []

    def callers_write_first(active, moves, job_id=None):
        if not transactions:
            # The batch has read version 2's usage rows; two callers' writes fill two of them
            for name in ("x", "y"):
                values[name] = name.encode()
                assert (
                    data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(values[name])))["version"]
                    == 2
                )
        transactions.append([record.name for record, _ in moves])
        return real_move(active, moves, job_id)

    rewrap.module.records._move = callers_write_first

    # When the rewrap runs: the rows it read have room for both records, the rows as stored for one
    job = run_rewrap(tenant_id, rewrap)

    # Then it moves one, stops at the budget, and version 2 sealed exactly 3 records
    assert transactions == [["a", "b"]]
    assert (job["migrated"], job["remaining"], job["status"]) == (1, 1, "failed")
    assert "usage budget" in job["error"]["message"]
    listed = [(v["version"], v["status"], v["records"], v["encryptions"]) for v in key_versions(tenant_id)]
    assert listed == [(1, "retired", 1, 2), (2, "active", 3, 3)]
    reader = Function("tenant_data")
    assert {name: read_record(reader, tenant_id, name)[0] for name in values} == values
