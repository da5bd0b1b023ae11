"""Rewrap throughput on DynamoDB Local, as a ratio to a raw Query + BatchWriteItem.

A tenant holds --records records under version 1 (sealed with its key, counted on the
version). Each run provisions the next version and times the rewrap of every record onto
it, chunk by chunk (migrate_chunk, what a rewrap job is made of); in the same run, a raw
copy of the same records (no keys, no conditions, no counts) is read back with Query and
written again with BatchWriteItem, 25 items a request. The ratio is the rewrap's rate over the raw rate
(1.0: as fast as the raw copy); the median over the runs is printed.

    python bench/rewrap.py [--records 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from pathlib import Path

from local_service import local_service, report

TENANT, RAW = "bench-rewrap", "bench-raw"
TARGET = 0.7


def seed(kms, records: int) -> None:
    """``records`` records sealed under version 1, written straight to the table (what years
    of callers' writes leave behind), and a raw copy of them under another partition key."""
    import boto3

    from tenant_kms.models import KeyVersion, TenantRecord
    from tenant_kms.sealing import seal_record

    kms.configure(TENANT, "global", {}, actor="bench")
    tmk = base64.b64decode(kms.unwrap(TENANT, 1, actor="bench")["key_b64"])
    with TenantRecord.batch_write() as batch:
        for i in range(records):
            name = f"record-{i:06d}"
            value = json.dumps({"customer": i, "note": "x" * 64}).encode()
            batch.save(
                TenantRecord(
                    TENANT,
                    name,
                    version=1,
                    ciphertext=seal_record(tmk, TENANT, name, 1, value),
                    revision=1,
                    updated_at="2026-01-01T00:00:00.000Z",
                )
            )
    KeyVersion(TENANT, 1).update(actions=[KeyVersion.records.add(records), KeyVersion.encryptions.add(records)])
    client = boto3.client("dynamodb")
    items = query_all(client, TenantRecord.Meta.table_name, TENANT)
    batch_write(client, TenantRecord.Meta.table_name, [{**item, "tenant_id": {"S": RAW}} for item in items])


def query_all(client, table: str, tenant_id: str) -> list[dict]:
    items: list[dict] = []
    pages = client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": tenant_id}},
        ConsistentRead=True,
    )
    for page in pages:
        items.extend(page["Items"])
    return items


def batch_write(client, table: str, items: list[dict]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        pending = {table: requests}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def raw_seconds(table: str) -> float:
    import boto3

    client = boto3.client("dynamodb")
    started = time.perf_counter()
    items = query_all(client, table, RAW)
    batch_write(client, table, [{**item, "updated_at": {"S": "2026-01-02T00:00:00.000Z"}} for item in items])
    return time.perf_counter() - started


def rewrap_seconds(kms, records: int, chunk: int) -> float:
    from tenant_kms.errors import Conflict
    from tenant_kms.records import TenantRecords

    kms.provision(TENANT, actor="bench")
    tenant_records = TenantRecords(kms)
    started = time.perf_counter()
    migrated, cursor = 0, None
    while True:
        moved = tenant_records.migrate_chunk(TENANT, after=cursor, limit=chunk)
        migrated, cursor = migrated + moved.migrated, moved.cursor
        if cursor is None or moved.blocked:
            break
    seconds = time.perf_counter() - started
    if migrated != records:
        raise Conflict(f"the rewrap moved {migrated} of {records} records")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=1000, help="records examined per chunk of the rewrap")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with local_service():
        from tenant_kms.models import TenantRecord
        from tenant_kms.service import TenantKms
        from tenant_kms.settings import Settings

        kms = TenantKms(Settings.from_env())
        seed(kms, args.records)
        runs = []
        for run in range(1, args.runs + 1):
            raw = raw_seconds(TenantRecord.Meta.table_name)
            rewrap = rewrap_seconds(kms, args.records, args.chunk)
            runs.append({"raw_s": round(raw, 2), "rewrap_s": round(rewrap, 2), "ratio": round(raw / rewrap, 3)})
            report(
                f"run {run}: raw Query + BatchWriteItem {args.records / raw:7.0f} records/s, "
                f"rewrap {args.records / rewrap:7.0f} records/s, ratio {raw / rewrap:.2f}"
            )
    ratio = statistics.median(r["ratio"] for r in runs)
    report(f"rewrap of {args.records} records: {ratio:.2f}x the raw rate (median of {args.runs}; target >= {TARGET})")
    if args.json:
        args.json.write_text(json.dumps({"records": args.records, "ratio": ratio, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
