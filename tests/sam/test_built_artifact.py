"""`sam build` succeeds, and every function runs from the built artifact alone.

Each invocation runs in a fresh interpreter with no site-packages and nothing of the source
tree: only the function's built code and the two built layers, as Lambda lays them out
(/var/task and /opt/python), against DynamoDB Local.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_queues import lambda_event
from support import fresh_sample, job_unit, purge_job

RUNNER = """
import json, sys
function_dir, layers, handler = sys.argv[1], sys.argv[2].split(":"), sys.argv[3]
sys.path[:0] = [function_dir, *layers]
module_name, function_name = handler.rsplit(".", 1)
module = __import__(module_name)

class Context:
    function_name = "built"; memory_limit_in_mb = 512; aws_request_id = "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:built"
    def get_remaining_time_in_millis(self): return 60_000

result = getattr(module, function_name)(json.load(sys.stdin), Context())
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("grpc", "google", "azure"))
print("RESULT " + json.dumps({"result": result, "file": module.__file__, "sdk_modules": leaked}))
"""


@pytest.fixture(scope="module")
def build_dir(sam_build) -> Path:
    return sam_build


def invoke(build_dir: Path, function: str, event_name: str | dict, *, only_global_tenants: bool = True) -> dict:
    handler = {
        "ConfigureFunction": "configure_handler.lambda_handler",
        "VerifyFunction": "verify_handler.lambda_handler",
        "ProvisionFunction": "provision_handler.lambda_handler",
        "RewrapFunction": "rewrap_handler.lambda_handler",
        "EraseFunction": "erase_handler.lambda_handler",
        "UnwrapFunction": "unwrap_handler.lambda_handler",
        "TenantDataFunction": "tenant_data_handler.lambda_handler",
    }[function]
    layers = f"{build_dir / 'CoreLayer' / 'python'}:{build_dir / 'ProvidersLayer' / 'python'}"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUNNER, str(build_dir / function), layers, handler],
        input=json.dumps(event_name if isinstance(event_name, dict) else fresh_sample(event_name)),
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd=build_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    answer = json.loads(line[len("RESULT ") :])
    assert answer["file"].startswith(str(build_dir)), answer["file"]
    if only_global_tenants:  # scheduled runs also serve other tests' GCP/Azure tenants
        assert answer["sdk_modules"] == []
    return answer["result"]


def http(answer: dict) -> tuple[int, dict | None]:
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


def unit_of(queues, queue: str, tenant_id: str) -> dict:
    """The tenant's units waiting in the queue, as the event Lambda's event source sends (the
    session's other tenants' units stay where they are)."""
    url = queues.urls[queue]
    mine = []
    while messages := queues.client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        mine += [m for m in messages if json.loads(m["Body"]).get("tenant_id") == tenant_id]
    assert mine, f"no unit of {tenant_id} in {queue}"
    return lambda_event(mine, f"arn:aws:sqs:us-east-1:123456789012:{queue}", "us-east-1")


def test_every_function_runs_from_the_built_artifact_with_its_sample_events(build_dir, queues):
    for function in ("ConfigureFunction", "ProvisionFunction", "UnwrapFunction", "TenantDataFunction"):
        assert (build_dir / function).is_dir()
        assert not list((build_dir / function).glob("**/site-packages")), "functions carry only their code"
        assert list((build_dir / function / "__pycache__").glob("*.cpython-311.pyc")), "bytecode is shipped"
    assert (build_dir / "ProvidersLayer/python/kms_wrapping/__pycache__").is_dir()

    status, view = http(invoke(build_dir, "ConfigureFunction", "configure_put_global"))
    assert (status, view["provider"], view["active_version"]) == (200, "global", 1)
    status, view = http(invoke(build_dir, "ConfigureFunction", "configure_get"))
    assert (status, view["status"]) == (200, "active")

    assert invoke(build_dir, "TenantDataFunction", "tenant_data_put") == {"name": "db-admin-password", "version": 1}
    status, created = http(invoke(build_dir, "ProvisionFunction", "provision_post"))
    assert (status, created) == (201, {"version": 2, "status": "active"})
    status, listed = http(invoke(build_dir, "ProvisionFunction", "provision_list"))
    assert [(v["version"], v["status"], v["records"]) for v in listed["versions"]] == [
        (1, "retired", 1),
        (2, "active", 0),
    ]

    unwrapped = invoke(build_dir, "UnwrapFunction", "unwrap")
    assert unwrapped["version"] == 2 and unwrapped["provider"] == "global" and 3500 < unwrapped["ttl_seconds"] <= 3600
    assert invoke(build_dir, "UnwrapFunction", "unwrap_version")["version"] == 1

    status, verified = http(invoke(build_dir, "VerifyFunction", "verify_post"))
    assert status == 200 and verified["ok"] is True
    # The schedule's run sends a unit per tenant (other tests' tenants share the tables), and
    # the function visits acme's as the queue's event source hands it over
    scheduled = invoke(build_dir, "VerifyFunction", "verify_scheduled", only_global_tenants=False)
    assert (scheduled["sweep"], scheduled["status"]) == ("reverify", "paged") and scheduled["sent"] >= 1
    assert invoke(build_dir, "VerifyFunction", unit_of(queues, "ReverifyQueue", "acme")) == {"batchItemFailures": []}
    assert invoke(build_dir, "VerifyFunction", "verify_reverify_units") == {"batchItemFailures": []}
    repolled = invoke(build_dir, "VerifyFunction", "verify_repoll_sealed", only_global_tenants=False)
    assert repolled["sweep"] == "repoll_sealed" and repolled["status"] == "paged"
    assert invoke(build_dir, "VerifyFunction", "verify_repoll_units") == {"batchItemFailures": []}

    status, job = http(invoke(build_dir, "RewrapFunction", "rewrap_post"))
    assert (status, job["status"], job["migrated"], job["remaining"]) == (202, "running", 0, 1)  # a job, nothing moved
    # The schedule's sweeps send a unit per tenant; acme's are visited as the event source hands them over
    scheduled = invoke(build_dir, "RewrapFunction", "rewrap_scheduled", only_global_tenants=False)
    assert {(name, s["status"]) for name, s in scheduled.items()} == {
        ("rewrap", "paged"),
        ("rewrap_wrapping_keys", "paged"),
    }
    units = unit_of(queues, "RewrapSweepQueue", "acme")
    assert sorted(json.loads(r["body"])["sweep"] for r in units["Records"]) == ["rewrap", "rewrap_wrapping_keys"]
    assert invoke(build_dir, "RewrapFunction", units) == {"batchItemFailures": []}
    assert invoke(build_dir, "RewrapFunction", "rewrap_sweep_units") == {"batchItemFailures": []}
    # and the job's unit, from the job queue, moves acme's record
    assert invoke(build_dir, "RewrapFunction", unit_of(queues, "RewrapJobQueue", "acme")) == {"batchItemFailures": []}
    got = invoke(build_dir, "TenantDataFunction", "tenant_data_get")
    assert (got["value_b64"], got["version"]) == ("aHVudGVyMg==", 2)
    assert invoke(build_dir, "TenantDataFunction", "tenant_data_delete") == {
        "name": "db-admin-password",
        "deleted": True,
    }

    assert http(invoke(build_dir, "ProvisionFunction", "provision_destroy")) == (204, None)
    assert http(invoke(build_dir, "EraseFunction", "erase_delete")) == (204, None)
    assert invoke(build_dir, "UnwrapFunction", "unwrap")["error"]["code"] == "conflict"  # being erased
    assert invoke(build_dir, "RewrapFunction", job_unit(purge_job("acme")))["status"] == "succeeded"
    assert invoke(build_dir, "UnwrapFunction", "unwrap")["error"]["code"] == "not_found"
