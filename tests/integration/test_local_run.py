"""The README's run command serves the API, and its curl sequences work exactly as written
(a rewrap job included: the runner plays the job queue's event source).

As written, the command runs the in-process gateway (up in seconds), and its first line says
so; RUNNER=sam (sam local, the built artifact in Lambda containers) serves the same sequence in
tests/sam/test_sam_local.py, and stops as tests/sam/test_sam_local.py checks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request

from sam_local import wait_listening
from support import ROOT, readme_block, run_readme_block

GATEWAY_RUNNER = "runner: the in-process gateway"


def test_readme_run_command_serves_the_curl_sequence(tmp_path):
    for port in (3000, 3001):
        assert not port_open(port), f"port {port} is taken: stop what runs there first"
    quick_start = readme_block("## Quick start")
    run_command = next(line.split("#")[0].strip() for line in quick_start.splitlines() if "run" in line)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "MASTER_KEY"))}
    env.pop("RUNNER", None)
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
