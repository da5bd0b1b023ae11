"""Rewrap throughput on DynamoDB Local, as a ratio to a raw Query + BatchWriteItem.

A tenant holds --records records under version 1 (sealed with its key, counted on the
version). Each run provisions the next version and times the rewrap of every record onto
it, chunk by chunk (migrate_chunk, what a rewrap job is made of); in the same run, a raw
copy of the same records (no keys, no conditions, no counts) is read back with Query and
written again with BatchWriteItem, 25 items a request. The ratio is the rewrap's rate over the raw rate
(1.0: as fast as the raw copy); the median and range over the runs are printed, with the
machine's load average, and each arm's CPU time in the bench and in DynamoDB Local (what the
arms cost whatever else the machine runs). Untimed warm-up rounds of both arms come first: DynamoDB Local's JVM
compiles each request path on first use, and the seeding has already run the raw copy's
Query and BatchWriteItem, so without them only the rewrap would pay for compiling.

    python bench/rewrap.py [--records 10000] [--runs 3] [--warmup 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import time
from pathlib import Path

from local_service import cpu_seconds, local_service, report

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
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds of both arms before the runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with local_service():
        from tenant_kms.models import TenantRecord
        from tenant_kms.service import TenantKms
        from tenant_kms.settings import Settings

        kms = TenantKms(Settings.from_env())
        seed(kms, args.records)
        for _ in range(args.warmup):
            raw_seconds(TenantRecord.Meta.table_name)
            rewrap_seconds(kms, args.records, args.chunk)
        load = [os.getloadavg()[0]]
        runs = []
        for run in range(1, args.runs + 1):
            before = cpu_seconds()
            raw = raw_seconds(TenantRecord.Meta.table_name)
            between = cpu_seconds()
            rewrap = rewrap_seconds(kms, args.records, args.chunk)
            after = cpu_seconds()
            # CPU seconds of each arm: (client, DynamoDB Local)
            raw_cpu = [round(b - a, 2) for a, b in zip(before, between, strict=True)]
            rewrap_cpu = [round(b - a, 2) for a, b in zip(between, after, strict=True)]
            runs.append(
                {
                    "raw_s": round(raw, 2),
                    "rewrap_s": round(rewrap, 2),
                    "ratio": round(raw / rewrap, 3),
                    "raw_cpu_s": raw_cpu,
                    "rewrap_cpu_s": rewrap_cpu,
                }
            )
            report(
                f"run {run}: raw Query + BatchWriteItem {args.records / raw:7.0f} records/s, "
                f"rewrap {args.records / rewrap:7.0f} records/s, ratio {raw / rewrap:.2f}; CPU s "
                f"client {raw_cpu[0]:.2f} / {rewrap_cpu[0]:.2f}, DynamoDB Local {raw_cpu[1]:.2f} / {rewrap_cpu[1]:.2f}"
            )
            load.append(os.getloadavg()[0])
    ratios = [r["ratio"] for r in runs]
    ratio = statistics.median(ratios)
    report(
        f"rewrap of {args.records} records: {ratio:.2f}x the raw rate (median of {args.runs}, range "
        f"{min(ratios):.2f}-{max(ratios):.2f}; load average {min(load):.1f}-{max(load):.1f}; target >= {TARGET})"
    )
    if args.json:
        result = {"records": args.records, "ratio": ratio, "runs": runs, "load": [round(x, 1) for x in load]}
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
