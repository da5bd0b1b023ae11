"""Function instances serving only global and AWS tenants never import the GCP or Azure SDKs
(their import is cold-start cost), and the hot path never imports the X-Ray SDK: checked in a
fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import make_customer
from support import ROOT
from world import configure

SCRIPT = """
import json, sys, time
sys.path[:0] = ["shared", "layers/providers", "local"]
from local_gateway import LocalContext, http_event, load_handler_module, routes_from_template

def loaded(prefixes):
    return sorted(m for m in sys.modules if m.split(".")[0] in prefixes)

tenants = sys.argv[1:]
unwrap = load_handler_module("functions/unwrap", "unwrap_handler.lambda_handler")
data = load_handler_module("functions/tenant_data", "tenant_data_handler.lambda_handler")
answers = [unwrap.lambda_handler({"tenant_id": t}, LocalContext("UnwrapFunction")) for t in tenants]
for t in tenants:
    put = {"op": "put", "tenant_id": t, "name": "n", "value_b64": "aGk="}
    answers.append(data.lambda_handler(put, LocalContext("TenantDataFunction")))
hot_path = loaded(("grpc", "google", "azure", "aws_xray_sdk"))
verify = load_handler_module("functions/verify", "verify_handler.lambda_handler")
(route,) = [r for r in routes_from_template()[0] if r.path == "/tenants/{tenant_id}/kms/verify"]
for t in tenants[1:]:  # the AWS tenant: the probe runs through the AWS adapter
    claims = {"sub": "alice", "tenant_id": t, "scope": "tenant-kms/admin", "auth_time": int(time.time())}
    event = http_event("POST", f"/tenants/{t}/kms/verify", route=route, path_parameters={"tenant_id": t}, claims=claims)
    answers.append(json.loads(verify.lambda_handler(event, LocalContext("VerifyFunction"))["body"]))
print("RESULT " + json.dumps({"answers": answers, "hot_path": hot_path, "admin": loaded(("grpc", "google", "azure"))}))
"""


def test_serving_global_and_aws_tenants_loads_no_gcp_or_azure_sdk(tenant_id, aws):
    """Catches a provider or service path that imports grpc, google.* (api_core, protobuf, auth,
    Cloud KMS) or azure.* while serving global and AWS tenants (unwrap, tenant data, a verify
    probing through the AWS adapter), or aws_xray_sdk on the unwrap and tenant data path."""
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
    unwrapped, put, verified = answer["answers"][:2], answer["answers"][2:4], answer["answers"][4:]
    assert [a.get("provider") or a for a in unwrapped] == ["global", "customer_kms_aws"]
    assert [a.get("version") or a for a in put] == [1, 1]
    assert [a.get("ok") or a for a in verified] == [True]
    assert answer["hot_path"] == []
    assert answer["admin"] == []
