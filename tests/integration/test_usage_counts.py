"""A version's counts live on usage rows, so a tenant's writers do not share one item; the
guarantees stay: a version is destroyed only when no record references it, the view's
``records`` is exact, and counts kept on version rows before the usage rows existed still
count."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import boto3
import testenv
from support import (
    Function,
    b64,
    configured_global,
    http_sample,
    invoke_sample,
    key_versions,
    partition_items,
    read_record,
    run_rewrap,
)

from tenant_kms.usage import USAGE_SLOTS

TABLES = testenv.TABLES
# Rotations the racing admin makes at most (each followed by a destroy of every retired version).
ROTATIONS = 6


def records_by_version(tenant_id: str) -> Counter:
    """What the data table holds: the tenant's records per version."""
    return Counter(int(item["version"]["N"]) for item in partition_items(TABLES["TenantDataTable"], tenant_id))


def assert_counts_exact(tenant_id: str) -> None:
    """Every version's view counts exactly the records the table holds under it."""
    held = records_by_version(tenant_id)
    listed = key_versions(tenant_id)
    assert {v["version"]: v["records"] for v in listed} == {v["version"]: held.get(v["version"], 0) for v in listed}
    destroyed = {v["version"] for v in listed if v["status"] == "destroyed"}
    assert not destroyed & set(held), "a destroyed version still seals records"


def test_writers_racing_provisions_and_destroys_never_lose_a_referenced_version(tenant_id):
    # Given a tenant whose admin rotates and destroys retired versions as fast as it can,
    # while four writers write (and rewrite) records
    configured_global(tenant_id)
    writers = [Function("tenant_data") for _ in range(4)]
    admin = Function("provision")
    start = threading.Barrier(len(writers) + 1)
    done = threading.Event()
    written: dict[str, bytes] = {}
    destroyed: list[int] = []

    def write(index: int) -> None:
        start.wait()
        for i in range(12):
            name = f"w{index}-{i % 8}"  # the last four rewrite earlier records
            value = f"{index}:{i}".encode()
            answer = writers[index](invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))
            if "error" not in answer:
                written[name] = value
            else:
                assert answer["error"]["code"] == "conflict", answer

    def rotate_and_destroy() -> None:
        start.wait()
        for _ in range(ROTATIONS):
            if done.is_set():
                break
            admin.http(http_sample("provision_post", tenant_id))
            for version in admin.http(http_sample("provision_list", tenant_id))[1]["versions"]:
                if version["status"] == "retired":
                    status, _ = admin.http(http_sample("provision_destroy", tenant_id, version=version["version"]))
                    assert status in (204, 409)
                    if status == 204:
                        destroyed.append(version["version"])

    with ThreadPoolExecutor(len(writers) + 1) as pool:
        admin_run = pool.submit(rotate_and_destroy)
        for future in [pool.submit(write, index) for index in range(len(writers))]:
            future.result()
        done.set()
        admin_run.result()

    # Then every record written reads back, no destroyed version seals one, and every count is exact
    data = Function("tenant_data")
    for name, value in written.items():
        got = read_record(data, tenant_id, name)
        assert isinstance(got, tuple) and got[0] == value, (name, got)
    assert_counts_exact(tenant_id)


def test_counts_kept_on_a_version_row_from_before_usage_rows_still_count(tenant_id):
    # Given a version 1 written before usage rows existed: its row counts its three records
    # itself, and the records name no usage row
    configured_global(tenant_id)
    data = Function("tenant_data")
    values = {f"old-{i}": f"old value {i}".encode() for i in range(3)}
    for name, value in values.items():
        assert data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))["version"] == 1
    as_before_usage_rows(tenant_id, version=1, records=3)
    assert [(v["version"], v["records"], v["encryptions"]) for v in key_versions(tenant_id)] == [(1, 3, 3)]

    # When a caller writes one more, and the tenant rotates
    assert data(invoke_sample("tenant_data_put", tenant_id, name="new", value_b64=b64(b"new")))["version"] == 1
    assert [(v["version"], v["records"], v["encryptions"]) for v in key_versions(tenant_id)] == [(1, 4, 4)]
    provision = Function("provision")
    assert provision.http(http_sample("provision_post", tenant_id))[0] == 201

    # Then version 1 cannot be destroyed while its old records are on it
    status, error = provision.http(http_sample("provision_destroy", tenant_id, version=1))
    assert status == 409 and "4 records" in error["error"]["message"]

    # and once the rewrap moved them, it can, and every record reads under version 2
    job = run_rewrap(tenant_id)
    assert (job["status"], job["migrated"], job["remaining"]) == ("succeeded", 4, 0)
    assert_counts_exact(tenant_id)
    assert provision.http(http_sample("provision_destroy", tenant_id, version=1)) == (204, None)
    for name, value in {**values, "new": b"new"}.items():
        assert read_record(data, tenant_id, name) == (value, 2)


def as_before_usage_rows(tenant_id: str, *, version: int, records: int) -> None:
    """Rewrite a version to how the service kept it before usage rows: counts on the version
    row, no usage rows, records naming none."""
    client = boto3.client("dynamodb")
    partition = f"{tenant_id}#usage"
    usage = client.query(
        TableName=TABLES["KeyVersionTable"],
        KeyConditionExpression="tenant_id = :p AND version BETWEEN :low AND :high",
        ExpressionAttributeValues={
            ":p": {"S": partition},
            ":low": {"N": str(version * USAGE_SLOTS)},
            ":high": {"N": str(version * USAGE_SLOTS + USAGE_SLOTS - 1)},
        },
        ConsistentRead=True,
    )["Items"]
    for item in usage:
        client.delete_item(
            TableName=TABLES["KeyVersionTable"], Key={"tenant_id": item["tenant_id"], "version": item["version"]}
        )
    client.update_item(
        TableName=TABLES["KeyVersionTable"],
        Key={"tenant_id": {"S": tenant_id}, "version": {"N": str(version)}},
        UpdateExpression="SET records = :n, encryptions = :n REMOVE usage_rows",
        ExpressionAttributeValues={":n": {"N": str(records)}},
    )
    for item in partition_items(TABLES["TenantDataTable"], tenant_id, client):
        client.update_item(
            TableName=TABLES["TenantDataTable"],
            Key={"tenant_id": item["tenant_id"], "name": item["name"]},
            UpdateExpression="REMOVE usage_row",
        )
