"""The README's run command serves the API, and its curl sequence works exactly as written."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time

from support import ROOT

README = (ROOT / "README.md").read_text()


def readme_block(after_heading: str) -> str:
    section = README[README.index(after_heading) :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError("the local API did not come up")


def test_readme_run_command_serves_the_curl_sequence():
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", 3000)) != 0, "port 3000 is taken: stop what runs there first"
    quick_start = readme_block("## Quick start")
    run_command = next(line.split("#")[0].strip() for line in quick_start.splitlines() if "run" in line)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "MASTER_KEY"))}
    server = subprocess.Popen(
        run_command,
        shell=True,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_port(3000, server)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", readme_block("### Try it")], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        configured, shown, provisioned, listed = [json.loads(line) for line in result.stdout.splitlines() if line]
        assert configured["provider"] == "global" and configured["active_version"] == 1
        assert shown["status"] == "active" and shown["last_verified_at"]
        assert provisioned == {"version": 2, "status": "active"}
        assert [(v["version"], v["status"]) for v in listed["versions"]] == [(1, "retired"), (2, "active")]

        invoked = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", readme_block("through the Lambda invoke path")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        put, unwrapped = [json.loads(line) for line in invoked.stdout.splitlines() if line]
        assert put == {"name": "db-admin-password", "version": 2}
        assert unwrapped["version"] == 2 and len(unwrapped["key_b64"]) == 44
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise AssertionError("the local runner did not stop on SIGTERM") from None
