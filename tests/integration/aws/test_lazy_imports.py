"""A function instance serving only global and AWS tenants never imports the GCP or Azure
SDKs (their import is cold-start cost): checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import make_customer
from support import ROOT
from world import configure

SCRIPT = """
import json, sys
sys.path[:0] = ["shared", "layers/providers", "local"]
from local_gateway import LocalContext, load_handler_module
unwrap = load_handler_module("functions/unwrap", "unwrap_handler.lambda_handler")
answers = [unwrap.lambda_handler({"tenant_id": t}, LocalContext("UnwrapFunction")) for t in sys.argv[1:]]
sdks = ("grpc.", "google.cloud", "google.auth", "azure")
loaded = sorted(m for m in sys.modules if m == "grpc" or m.startswith(sdks))
print("RESULT " + json.dumps({"providers": [a.get("provider") or a for a in answers], "loaded": loaded}))
"""


def test_serving_global_and_aws_tenants_loads_no_gcp_or_azure_sdk(tenant_id, aws):
    aws_tenant = f"{tenant_id}-aws"
    customer = make_customer(aws, aws_tenant)
    assert configure(tenant_id, "global", {})[0] == 200
    assert configure(aws_tenant, "customer_kms_aws", customer.config())[0] == 200
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, tenant_id, aws_tenant],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert answer["providers"] == ["global", "customer_kms_aws"]
    assert answer["loaded"] == []
