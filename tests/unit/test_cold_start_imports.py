"""Import cost is cold-start cost: what each function's handler module loads at start-up,
checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Only a tenant on GCP or Azure needs these; the X-Ray SDK builds a client at import (~150 ms).
PROVIDER_SDKS = ("grpc", "google", "azure")
HOT_PATH = ("UnwrapFunction", "TenantDataFunction")

HANDLERS = """
import json, sys
sys.path[:0] = ["shared", "layers/providers", "local"]
from local_gateway import function_specs, load_handler_module

def loaded(prefixes):
    return sorted(m for m in sys.modules if m.split(".")[0] in prefixes)

specs = function_specs()
hot = sys.argv[1].split(",")
for logical_id in hot:  # first, so nothing an admin function loads is counted against them
    load_handler_module(*specs[logical_id], fresh_name="fn_" + logical_id)
after_hot_path = loaded(("grpc", "google", "azure", "aws_xray_sdk"))
for logical_id in sorted(set(specs) - set(hot)):
    load_handler_module(*specs[logical_id], fresh_name="fn_" + logical_id)
print("RESULT " + json.dumps({"functions": sorted(specs), "hot_path": after_hot_path,
                              "all": loaded(("grpc", "google", "azure", "aws_xray_sdk"))}))
"""


def run(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=env or {"PYTHONPATH": f"{ROOT / 'shared'}:{ROOT / 'layers' / 'providers'}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_service_and_the_identity_module_do_not_import_boto3():
    core = "tenant_kms.service, tenant_kms.records, tenant_kms.jobs, tenant_kms.unsealing, tenant_kms.identity"
    script = f"import sys, {core}; print('boto3' in sys.modules)"
    assert run(script).strip() == "False"


def test_no_handler_module_imports_a_cloud_sdk_or_xray():
    """Catches a module-level import of grpc, google.* (google.api_core, google.protobuf, google.auth,
    Cloud KMS), azure.* or aws_xray_sdk in any function's handler or anything it imports at
    start-up (the admin functions' tracer loads the X-Ray SDK on the first invocation)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_REGION": "us-east-1",
        "MASTER_KEY_B64": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "CONFIG_TABLE": "configs",
        "KEY_VERSION_TABLE": "key-versions",
        "TENANT_DATA_TABLE": "tenant-data",
        "IDEMPOTENCY_TABLE": "idempotency",
    }
    out = run(HANDLERS, ",".join(HOT_PATH), env=env)
    answer = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    assert set(HOT_PATH) < set(answer["functions"]) and len(answer["functions"]) >= 8
    assert answer["hot_path"] == []
    assert answer["all"] == []


def test_the_admin_tracer_is_built_by_the_first_invocation_and_kept():
    """Catches the tracer being built at import again (the X-Ray SDK's cost back in every admin
    function's cold import), per invocation, or a traced handler losing its answer."""
    script = """
import sys
from tenant_kms.tracing import tracer

@tracer.capture_lambda_handler(capture_response=False)
def handler(event, context):
    return {"echo": event["n"]}

before = "aws_xray_sdk.core" in sys.modules
answers = [handler({"n": n}, None) for n in (1, 2)]
built = tracer.tracer
print(before, answers == [{"echo": 1}, {"echo": 2}], "aws_xray_sdk.core" in sys.modules, handler.__name__)
assert tracer.tracer is built
"""
    assert run(script).split() == ["False", "True", "True", "handler"]
