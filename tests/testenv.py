"""Test settings for every test: dummy AWS credentials, table names unique to this run and
a random master key, set before any function module reads its settings."""

from __future__ import annotations

import base64
import os
import secrets
import uuid

RUN = uuid.uuid4().hex[:8]
MASTER_KEY = secrets.token_bytes(32)
TABLES = {
    "TenantConfigTable": f"tkms-configs-{RUN}",
    "KeyVersionTable": f"tkms-key-versions-{RUN}",
    "TenantDataTable": f"tkms-tenant-data-{RUN}",
    "IdempotencyTable": f"tkms-idempotency-{RUN}",
    "JobTable": f"tkms-jobs-{RUN}",
    "SweepTable": f"tkms-sweeps-{RUN}",
}
# The tables keyed by tenant_id (idempotency records are keyed by a hash of tenant and key).
TENANT_TABLES = {k: v for k, v in TABLES.items() if k != "IdempotencyTable"}

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_REGION="us-east-1",
    AWS_DEFAULT_REGION="us-east-1",
    CONFIG_TABLE=TABLES["TenantConfigTable"],
    KEY_VERSION_TABLE=TABLES["KeyVersionTable"],
    TENANT_DATA_TABLE=TABLES["TenantDataTable"],
    IDEMPOTENCY_TABLE=TABLES["IdempotencyTable"],
    JOB_TABLE=TABLES["JobTable"],
    # Batches back to back unless a test sets the rate (it then drives its own clock).
    REWRAP_BATCH_INTERVAL_SECONDS="0",
    SWEEP_TABLE=TABLES["SweepTable"],
    MASTER_KEY_B64=base64.b64encode(MASTER_KEY).decode(),
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_DEV="false",
)
# Nothing in the tests may reach a real AWS endpoint.
os.environ.pop("AWS_PROFILE", None)
os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
# Nor a real Google endpoint over gRPC, whose C core resolves names itself: its standard
# proxy setting sends every channel to a port where nothing listens, unless a test's fake serves it.
os.environ["grpc_proxy"] = "http://127.0.0.1:9"  # noqa: SIM112 - gRPC reads only this spelling
