"""The hot paths on DynamoDB Local, as ratios to a raw GetItem / PutItem measured in the same run.

A warm instance (its session cache holds the key) answers unwrap, a data get of a 1 KB
record and a data put rewriting it, through the shared core as the functions call it, with
audit entries written at INFO as deployed (to /dev/null). Baselines, same run: one consistent
GetItem of the config row and one PutItem of a 1 KB item, on a botocore client configured as
the service's own (no parameter validation, no retries). For reference it also times, raw,
what a data get and put cannot do without: a BatchGetItem of the config row and the record,
and a TransactWriteItems of a record put and a usage row update.

Arms alternate in short rounds (the machine is shared and its load moves): each ratio is
the median over the rounds of the arm's time in a round over its baseline's in that round.

    python bench/hot_path.py [--rounds 60] [--ops 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from local_service import local_service, report

TENANT = "bench-hot-path"
VALUE = os.urandom(1024)
TARGETS = {"unwrap": 1.2, "data get": 1.3, "data put": 2.2}
# Each arm's baseline: a raw GetItem or a raw PutItem.
BASELINE = {
    "unwrap": "get",
    "data get": "get",
    "data put": "put",
    "two GetItems": "get",
    "BatchGetItem (2 items)": "get",
    "TransactWriteItems (2 actions)": "put",
}


def timed(arms: dict[str, Callable[[], object]], rounds: int, ops: int) -> dict[str, list[float]]:
    """Seconds per call of each arm in each round, the arms taking turns round by round."""
    for arm in arms.values():
        for _ in range(ops):
            arm()
    samples: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, arm in arms.items():
            started = time.perf_counter()
            for _ in range(ops):
                arm()
            samples[name].append((time.perf_counter() - started) / ops)
    return samples


def arms() -> dict[str, Callable[[], object]]:
    import botocore.config
    import botocore.session

    from tenant_kms.models import KeyVersion, TenantConfig, TenantRecord
    from tenant_kms.records import TenantRecords
    from tenant_kms.service import TenantKms
    from tenant_kms.settings import Settings
    from tenant_kms.usage import slot

    kms = TenantKms(Settings.from_env())
    records = TenantRecords(kms)
    kms.configure(TENANT, "global", {}, actor="bench")
    records.put_record(TENANT, "record", VALUE, actor="bench")
    client = botocore.session.get_session().create_client(
        "dynamodb", config=botocore.config.Config(parameter_validation=False, retries={"total_max_attempts": 1})
    )
    configs, data, versions = TenantConfig.Meta.table_name, TenantRecord.Meta.table_name, KeyVersion.Meta.table_name
    raw_item = {"tenant_id": {"S": "bench-raw"}, "name": {"S": "record"}, "ciphertext": {"B": VALUE}}
    usage_row = {"tenant_id": {"S": f"{TENANT}#usage"}, "version": {"N": str(slot(1, 0))}}

    def get_config() -> object:
        return client.get_item(TableName=configs, Key={"tenant_id": {"S": TENANT}}, ConsistentRead=True)

    def two_gets() -> object:  # what unwrap read before the config row named the active version
        get_config()
        key = {"tenant_id": {"S": TENANT}, "version": {"N": "1"}}
        return client.get_item(TableName=versions, Key=key, ConsistentRead=True)

    def batch_get() -> object:
        keys = {
            configs: {"Keys": [{"tenant_id": {"S": TENANT}}], "ConsistentRead": True},
            data: {"Keys": [{"tenant_id": {"S": TENANT}, "name": {"S": "record"}}], "ConsistentRead": True},
        }
        return client.batch_get_item(RequestItems=keys)

    def transaction() -> object:
        return client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": data, "Item": raw_item}},
                {
                    "Update": {
                        "TableName": versions,
                        "Key": usage_row,
                        "UpdateExpression": "ADD bench :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )

    return {
        "get": get_config,
        "put": lambda: client.put_item(TableName=data, Item=raw_item),
        "unwrap": lambda: kms.unwrap(TENANT, None, actor="bench"),
        "data get": lambda: records.get_record(TENANT, "record", actor="bench"),
        "data put": lambda: records.put_record(TENANT, "record", VALUE, actor="bench"),
        "two GetItems": two_gets,
        "BatchGetItem (2 items)": batch_get,
        "TransactWriteItems (2 actions)": transaction,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--ops", type=int, default=5, help="calls of an arm per round")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with local_service():
        os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO"  # audit entries cost what they cost deployed
        calls = arms()
        runs = []
        for run in range(1, args.runs + 1):
            samples = timed(calls, args.rounds, args.ops)
            ratios = {
                name: statistics.median(a / b for a, b in zip(samples[name], samples[baseline], strict=True))
                for name, baseline in BASELINE.items()
            }
            seconds = {name: statistics.median(samples[name]) for name in ("get", "put")}
            runs.append({"get_us": seconds["get"] * 1e6, "put_us": seconds["put"] * 1e6, **ratios})
            report(
                f"run {run}: GetItem {seconds['get'] * 1e6:.0f} us, PutItem {seconds['put'] * 1e6:.0f} us; "
                + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
            )
    for name, target in TARGETS.items():
        values = [run[name] for run in runs]
        raw = "GetItem" if BASELINE[name] == "get" else "PutItem"
        report(f"{name}: {min(values):.2f}-{max(values):.2f}x a raw {raw} ({args.runs} runs; target <= {target})")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
