"""Cold-start import cost of every function, from the built artifact, against `import boto3`.

Each sample is a fresh interpreter that sees only what Lambda would: the function's built
code and the two built layers (no site-packages). The median of several runs of each is
printed as a ratio to the median of `import boto3` measured the same way in the same run,
with the unzipped size of every function plus its layers.

    python bench/cold_start.py [--build-dir .aws-sam/build] [--runs 9]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = {
    "UnwrapFunction": "unwrap_handler",
    "TenantDataFunction": "tenant_data_handler",
    "ConfigureFunction": "configure_handler",
    "ProvisionFunction": "provision_handler",
    "VerifyFunction": "verify_handler",
    "RewrapFunction": "rewrap_handler",
    "EraseFunction": "erase_handler",
}
LAYERS = ("CoreLayer", "ProvidersLayer")
SIZE_BUDGET_MB = 120

PROBE = """
import sys, time
sys.path[:0] = sys.argv[2].split(":")
started = time.perf_counter()
__import__(sys.argv[1])
print(time.perf_counter() - started)
"""


def environment() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "CONFIG_TABLE": "bench-configs",
        "KEY_VERSION_TABLE": "bench-versions",
        "TENANT_DATA_TABLE": "bench-data",
        "IDEMPOTENCY_TABLE": "bench-idempotency",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "MASTER_KEY_B64": base64.b64encode(b"\0" * 32).decode(),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
    }


def import_seconds(module: str, path: list[Path]) -> float:
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", PROBE, module, ":".join(map(str, path))],
        capture_output=True,
        text=True,
        env=environment(),
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def size_mb(paths: list[Path]) -> float:
    return sum(f.stat().st_size for p in paths for f in p.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    layers = [args.build_dir / layer / "python" for layer in LAYERS]
    for path in layers:
        if not path.is_dir():
            sys.exit(f"{path} is missing: run `make build` first")

    baseline = statistics.median(import_seconds("boto3", layers) for _ in range(args.runs))
    print(f"baseline: import boto3 from the built layers, median of {args.runs}: {baseline * 1000:.0f} ms")
    print(f"{'function':<20} {'import ms':>9} {'x boto3':>8} {'unzipped MB':>12}")
    results = {"baseline_ms": round(baseline * 1000, 1), "runs": args.runs, "functions": {}}
    for logical_id, module in FUNCTIONS.items():
        path = [args.build_dir / logical_id, *layers]
        seconds = statistics.median(import_seconds(module, path) for _ in range(args.runs))
        megabytes = size_mb(path)
        ratio = seconds / baseline
        results["functions"][logical_id] = {
            "import_ms": round(seconds * 1000, 1),
            "ratio": round(ratio, 2),
            "unzipped_mb": round(megabytes, 1),
        }
        print(f"{logical_id:<20} {seconds * 1000:>9.0f} {ratio:>8.2f} {megabytes:>12.1f}")
    biggest = max(r["unzipped_mb"] for r in results["functions"].values())
    print(
        f"largest function + layers: {biggest:.1f} MB unzipped ({biggest / SIZE_BUDGET_MB:.2f} of the "
        f"{SIZE_BUDGET_MB} MB budget)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
