"""The service's own tables on a DynamoDB Local of the bench's own, for the write benches.

Tables come from template.yaml, as in the tests and local runs; the service code is the
shared core itself, called in process (what a warm function instance runs), so the numbers
are DynamoDB Local's and the core's, not an HTTP layer's.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "shared"), str(ROOT / "layers" / "providers"), str(ROOT / "local")]


@contextlib.contextmanager
def local_service() -> Iterator[dict[str, str]]:
    """DynamoDB Local with fresh tables; the environment a function instance would read."""
    import boto3
    from dynamodb_local import DynamoDBLocal
    from local_tables import TABLE_SETTINGS, create_tables

    run = uuid.uuid4().hex[:6]
    names = {logical_id: f"bench-{logical_id.lower()}-{run}" for logical_id in TABLE_SETTINGS}
    with DynamoDBLocal() as dynamodb:
        os.environ.update(
            AWS_ENDPOINT_URL_DYNAMODB=dynamodb.endpoint,
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            MASTER_KEY_B64=base64.b64encode(secrets.token_bytes(32)).decode(),
            POWERTOOLS_TRACE_DISABLED="true",
            POWERTOOLS_METRICS_NAMESPACE="bench",
            POWERTOOLS_LOG_LEVEL="WARNING",
            **{setting: names[logical_id] for logical_id, setting in TABLE_SETTINGS.items()},
        )
        os.environ.pop("AWS_PROFILE", None)
        create_tables(boto3.client("dynamodb"), names)
        # The service's metrics (EMF) go to stdout, as in Lambda; the bench prints its own lines.
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield names


def cpu_seconds() -> tuple[float, float]:
    """CPU time so far of this process and of its children (DynamoDB Local's JVM), from /proc
    (Linux): on a loaded machine these, unlike wall time, show what each arm itself costs."""
    own = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    children = 0.0
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid():  # ppid
            children += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return own, children


def report(line: str) -> None:
    print(line, file=sys.__stdout__, flush=True)
