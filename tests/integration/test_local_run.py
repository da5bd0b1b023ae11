"""The README's run command serves the API, and its curl sequences work exactly as written
(a rewrap job included: the runner plays the job queue's event source; and the BYOK
walkthrough, the customer's AWS account on the runner's moto).

As written, the command runs the in-process gateway (up in seconds), and its first line says
so; RUNNER=sam (sam local, the built artifact in Lambda containers) serves the same sequence in
tests/sam/test_sam_local.py, and stops as tests/sam/test_sam_local.py checks.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import boto3
from run_local import LOCAL_TABLES
from sam_local import wait_listening
from support import ROOT, readme_block, run_readme_block, snapshot_tables

GATEWAY_RUNNER = "runner: the in-process gateway"


def test_readme_run_command_serves_the_curl_sequence(tmp_path):
    for port in (3000, 3001):
        assert not port_open(port), f"port {port} is taken: stop what runs there first"
    quick_start = readme_block("## Quick start")
    run_command = next(line.split("#")[0].strip() for line in quick_start.splitlines() if "run" in line)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "MASTER_KEY"))}
    # As typed in a shell: under `make test` these would make it a sub-make, which prints
    # "Entering directory" before anything of its own.
    for inherited in ("RUNNER", "MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        env.pop(inherited, None)
    log = tmp_path / "run.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            run_command, shell=True, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        for port in (3000, 3001):  # a start-up bound, not a speed check
            assert wait_listening(port, server, timeout=600), log.read_text()[-4000:]
        assert log.read_text().startswith(GATEWAY_RUNNER), log.read_text()[-4000:]  # the first line

        configured, shown, provisioned, listed = run_readme_block("### Try it")
        assert configured["provider"] == "global" and configured["active_version"] == 1
        assert shown["status"] == "active" and shown["last_verified_at"]
        assert provisioned == {"version": 2, "status": "active"}
        assert [(v["version"], v["status"]) for v in listed["versions"]] == [(1, "retired"), (2, "active")]

        put, unwrapped = run_readme_block("through the Lambda invoke path")
        assert put == {"name": "db-admin-password", "version": 2}
        assert unwrapped["version"] == 2 and len(unwrapped["key_b64"]) == 44
        # the admin page beside the API
        with urllib.request.urlopen("http://127.0.0.1:3000/admin/", timeout=60) as page:
            assert b"Tenant KMS" in page.read()

        # The job queue's event source, played by the runner, takes the rewrap job to its end
        provisioned, started, finished = run_readme_block("A rewrap runs as a job locally too")
        assert provisioned == {"version": 3, "status": "active"}
        assert (started["status"], started["remaining"]) == ("running", 1)
        assert (finished["job_id"], finished["status"], finished["migrated"], finished["remaining"]) == (
            started["job_id"],
            "succeeded",
            1,
            0,
        )

        # Bring your own AWS KMS key, the customer's account on the runner's moto (IAM enforced)
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=re.search(r"DynamoDB Local at (http://[\d.:]+)", log.read_text()).group(1),
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        before = snapshot_tables(LOCAL_TABLES, dynamodb)
        onboarding, created, configured, unwrapped = run_readme_block("### Try it locally")
        assert onboarding["aws"]["principal_arn"].endswith(":role/tenant-kms-key-wrapping")
        assert created["config"]["role_arn"].endswith(":role/tenant-kms-globex")
        assert (configured["provider"], configured["status"], configured["active_version"]) == (
            "customer_kms_aws",
            "active",
            1,
        )
        assert configured["config"]["external_id"] == onboarding["aws"]["external_id"]
        assert (unwrapped["version"], unwrapped["provider"]) == (1, "customer_kms_aws")
        configured_tables = snapshot_tables(LOCAL_TABLES, dynamodb)
        assert changed_tenants(before, configured_tables) == {"globex"}

        refused, sealed, provision = run_readme_block("and seals the tenant")
        assert refused["error"]["code"] == "sealed" and "AccessDenied" in refused["error"]["message"]
        assert sealed["status"] == "sealed" and "AccessDenied" in sealed["sealed_reason"]
        assert provision["error"]["code"] == "sealed"
        sealed_tables = snapshot_tables(LOCAL_TABLES, dynamodb)
        # The seal is the config row's; the refused provision wrote nothing.
        assert changed_rows(configured_tables, sealed_tables) == {("tenant-kms-configs", "globex")}

        unsealed, unwrapped_again = run_readme_block("and the tenant's admin unseals")
        assert (unsealed["status"], unsealed["sealed_reason"]) == ("active", None)
        assert unwrapped_again["key_b64"] == unwrapped["key_b64"]
        assert changed_rows(sealed_tables, snapshot_tables(LOCAL_TABLES, dynamodb)) == {
            ("tenant-kms-configs", "globex")
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise AssertionError("the local runner did not stop on SIGTERM") from None
        deadline = time.monotonic() + 120  # its servers let go of the ports, for whatever runs next
        while any(port_open(port) for port in (3000, 3001)) and time.monotonic() < deadline:
            time.sleep(0.5)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def changed_rows(before: dict, after: dict) -> set[tuple[str, str]]:
    """(table, partition) of every item added, removed or changed."""
    return {
        (table, item["tenant_id"]["S"])
        for table in after
        for item in [i for i in after[table] if i not in before[table]]
        + [i for i in before[table] if i not in after[table]]
    }


def changed_tenants(before: dict, after: dict) -> set[str]:
    """The tenants of those items (a tenant's usage and external id rows are "<tenant>#…")."""
    return {partition.split("#")[0] for _, partition in changed_rows(before, after)}
