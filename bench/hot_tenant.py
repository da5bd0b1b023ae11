"""Eight writers on one tenant against eight writers on eight tenants, on DynamoDB Local.

Each writer is a process of its own with its own service instance (as a warm function
instance is): it unwraps its key first, then, once all are ready, writes --writes new
records through the service's record write. The ratio is the time the eight take on one tenant over the time they
take spread over eight tenants (1.0: a tenant's writes do not wait on each other). A write
the service answers with a conflict is sent again, as a caller would; conflicts and the
service's own retries (transactions cancelled by another) are counted. The arms
alternate; the median and range of the ratios over the runs are printed, with the machine's
load average.

    python bench/hot_tenant.py [--writers 8] [--writes 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path

from local_service import local_service, report

TARGET = 1.5


def writer(tenant: str, names: list[str], ready, results) -> None:
    """One writer process: warms its key cache, waits for the others, writes its records."""
    from tenant_kms.errors import Conflict
    from tenant_kms.records import TenantRecords
    from tenant_kms.service import TenantKms
    from tenant_kms.settings import Settings
    from tenant_kms.storage import Backoff

    pauses = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        time.sleep(seconds)

    records = TenantRecords(TenantKms(Settings.from_env(), backoff=Backoff(sleep=pause)))
    records.put_record(tenant, f"{names[0]}-warm", b"x", actor="bench")
    ready.wait()
    pauses.clear()
    conflicts = 0
    for name in names:
        while True:
            try:
                records.put_record(tenant, name, b"x" * 100, actor="bench")
                break
            except Conflict:
                conflicts += 1
    results.put((conflicts, len(pauses)))


def write_seconds(tenants: list[str], writes: int, label: str) -> tuple[float, int, int]:
    """Seconds until every writer has written ``writes`` records; the conflicts answered, and the
    retries (a transaction cancelled by another, a condition lost to a concurrent write) meanwhile."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(len(tenants) + 1)
    results = context.Queue()
    writers = [
        context.Process(target=writer, args=(tenant, [f"{label}-w{n}-{i:04d}" for i in range(writes)], ready, results))
        for n, tenant in enumerate(tenants)
    ]
    for process in writers:
        process.start()
    ready.wait()
    started = time.perf_counter()
    answers = [results.get() for _ in writers]
    seconds = time.perf_counter() - started
    for process in writers:
        process.join()
    return seconds, sum(c for c, _ in answers), sum(r for _, r in answers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--writes", type=int, default=50, help="records each writer writes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with local_service():
        from tenant_kms.service import TenantKms
        from tenant_kms.settings import Settings

        kms = TenantKms(Settings.from_env())
        hot = "bench-hot"
        spread = [f"bench-spread-{n}" for n in range(args.writers)]
        for tenant in [hot, *spread]:
            kms.configure(tenant, "global", {}, actor="bench")
        runs = []
        load = [os.getloadavg()[0]]
        for run in range(1, args.runs + 1):
            one, one_conflicts, one_retries = write_seconds([hot] * args.writers, args.writes, f"r{run}")
            many, many_conflicts, many_retries = write_seconds(spread, args.writes, f"r{run}")
            total = args.writers * args.writes
            runs.append(
                {
                    "one_tenant_s": round(one, 2),
                    "eight_tenants_s": round(many, 2),
                    "ratio": round(one / many, 3),
                    "conflicts": [one_conflicts, many_conflicts],
                    "retries": [one_retries, many_retries],
                }
            )
            report(
                f"run {run}: one tenant {total / one:5.0f} writes/s "
                f"({one_retries} retries, {one_conflicts} conflicts); {args.writers} tenants {total / many:5.0f} "
                f"writes/s ({many_retries} retries, {many_conflicts} conflicts); ratio {one / many:.2f}"
            )
            load.append(os.getloadavg()[0])
    ratios = [r["ratio"] for r in runs]
    ratio = statistics.median(ratios)
    report(
        f"{args.writers} writers on one tenant take {ratio:.2f}x the time of {args.writers} writers on "
        f"{args.writers} tenants (median of {args.runs}, range {min(ratios):.2f}-{max(ratios):.2f}; "
        f"load average {min(load):.1f}-{max(load):.1f}; target <= {TARGET})"
    )
    if args.json:
        result = {"writers": args.writers, "ratio": ratio, "runs": runs, "load": [round(x, 1) for x in load]}
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
