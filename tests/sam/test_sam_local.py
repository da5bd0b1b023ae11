"""Every function runs from the `sam build` artifact in a Lambda container through `sam local`.

`sam local invoke` runs each function with each of its sample events from events/, in the
order of a tenant's lifecycle, against DynamoDB Local on the host; `sam local start-api` and
`sam local start-lambda` serve the README's curl sequence as far as they can. The container
image comes from local/lambda_image.py (the official Lambda image when present, otherwise a
stand-in built locally): no image is ever pulled. Without a usable Docker these tests fail.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import lambda_image
import pytest
import testenv
import yaml
from build_bundle import build
from dynamodb_local import DynamoDBLocal, free_port
from local_tables import create_tables
from support import EVENTS, ROOT

pytestmark = pytest.mark.sam

SAM = os.environ.get("SAM_CLI", str(ROOT / ".tools-sam" / "bin" / "sam"))
SAM_ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
README = (ROOT / "README.md").read_text()
README_BASE_URL = "http://127.0.0.1:3000"
UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "authentication required"}}


@dataclass(frozen=True)
class SamLocal:
    build_dir: Path
    options: tuple[str, ...]  # what every `sam local` command here is given
    dynamodb: Any  # a boto3 client of the DynamoDB Local the containers use

    def clear(self) -> None:
        """No tenants at all, as the README's sequence and the lifecycle below start."""
        for name in testenv.TABLES.values():
            keys = [k["AttributeName"] for k in self.dynamodb.describe_table(TableName=name)["Table"]["KeySchema"]]
            for item in self.dynamodb.scan(TableName=name)["Items"]:
                self.dynamodb.delete_item(TableName=name, Key={k: item[k] for k in keys})

    def snapshot(self) -> dict[str, list]:
        return {
            name: sorted(json.dumps(item, sort_keys=True) for item in self.dynamodb.scan(TableName=name)["Items"])
            for name in testenv.TABLES.values()
        }


@pytest.fixture(scope="module")
def invoke_image() -> str:
    try:
        return lambda_image.prepare()
    except lambda_image.LambdaImageError as error:
        reason = str(error)
    pytest.fail(f"sam local needs Docker and a Lambda python3.11 image: {reason}", pytrace=False)


@pytest.fixture(scope="module")
def container_dynamodb() -> Iterator[tuple[DynamoDBLocal, Any]]:
    """DynamoDB Local of its own: the scheduled jobs see only this module's tenants, and the
    sample events' tenant `acme` is not shared with other tests. DynamoDB Local listens on
    every interface (it is given only a port), so containers reach it via the host gateway."""
    with DynamoDBLocal() as dynamodb:
        client = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint)
        create_tables(client, testenv.TABLES)
        yield dynamodb, client


@pytest.fixture(scope="module")
def sam_local(invoke_image, container_dynamodb, tmp_path_factory) -> SamLocal:
    dynamodb, client = container_dynamodb
    build_dir = tmp_path_factory.mktemp("sam-local-build")
    built = build(build_dir, sam=SAM)  # what `make build` produces: sam build, bytecode included
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    template = build_dir / "template.yaml"
    declare_dynamodb_endpoint(template)
    env_vars = build_dir.parent / "env-vars.json"
    env_vars.write_text(
        json.dumps(
            {
                "Parameters": {
                    "CONFIG_TABLE": testenv.TABLES["TenantConfigTable"],
                    "KEY_VERSION_TABLE": testenv.TABLES["KeyVersionTable"],
                    "TENANT_DATA_TABLE": testenv.TABLES["TenantDataTable"],
                    "MASTER_KEY_B64": base64.b64encode(testenv.MASTER_KEY).decode(),
                    "MASTER_KEY_SECRET_ID": "",
                    "AWS_ENDPOINT_URL_DYNAMODB": f"http://host.docker.internal:{dynamodb.port}",
                }
            }
        )
    )
    options = (
        "--template-file", str(template),
        "--invoke-image", invoke_image,
        "--skip-pull-image",
        "--add-host", "host.docker.internal:host-gateway",
        "--env-vars", str(env_vars),
    )  # fmt: skip
    return SamLocal(build_dir, options, client)


def declare_dynamodb_endpoint(template: Path) -> None:
    """sam local gives a function only the variables the template declares, and template.yaml
    does not declare AWS_ENDPOINT_URL_DYNAMODB: declare it (empty, as a deployment would have
    it) in the built copy, so --env-vars can point the functions at DynamoDB Local."""
    built = yaml.safe_load(template.read_text())  # sam build writes plain YAML, no short tags
    variables = built["Globals"]["Function"]["Environment"]["Variables"]
    if "AWS_ENDPOINT_URL_DYNAMODB" not in variables:
        variables["AWS_ENDPOINT_URL_DYNAMODB"] = ""
        template.write_text(yaml.safe_dump(built, sort_keys=False))


def invoke(sam_local: SamLocal, function: str, event_name: str) -> dict[str, Any]:
    """`sam local invoke` of one function with one sample event; its answer."""
    result = subprocess.run(
        [SAM, "local", "invoke", function, "--event", str(EVENTS / f"{event_name}.json"), *sam_local.options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=SAM_ENV,
    )
    logs = result.stderr[-4000:]
    assert result.returncode == 0, logs
    assert f"Mounting {sam_local.build_dir / function} as /var/task" in result.stderr, logs
    lines = result.stdout.strip().splitlines()
    assert lines, logs
    answer = json.loads(lines[-1])
    assert "errorMessage" not in answer, logs
    return answer


def http(answer: dict[str, Any]) -> tuple[int, Any]:
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


def test_every_function_runs_in_a_lambda_container_with_each_sample_event(sam_local):
    sam_local.clear()

    def call(function: str, event_name: str) -> dict[str, Any]:
        return invoke(sam_local, function, event_name)

    status, view = http(call("ConfigureFunction", "configure_put_global"))
    assert (status, view["tenant_id"], view["provider"], view["active_version"]) == (200, "acme", "global", 1)
    status, view = http(call("ConfigureFunction", "configure_get"))
    assert (status, view["status"], view["active_version"]) == (200, "active", 1)
    assert view["last_verified_at"] and view["last_verify_error"] is None

    assert call("TenantDataFunction", "tenant_data_put") == {"name": "db-admin-password", "version": 1}
    assert http(call("ProvisionFunction", "provision_post")) == (201, {"version": 2, "status": "active"})
    status, listed = http(call("ProvisionFunction", "provision_list"))
    assert status == 200
    assert [(v["version"], v["status"], v["records"]) for v in listed["versions"]] == [
        (1, "retired", 1),
        (2, "active", 0),
    ]

    unwrapped = call("UnwrapFunction", "unwrap")
    assert (unwrapped["tenant_id"], unwrapped["version"], unwrapped["provider"]) == ("acme", 2, "global")
    assert len(base64.b64decode(unwrapped["key_b64"])) == 32 and 3500 < unwrapped["ttl_seconds"] <= 3600
    retired = call("UnwrapFunction", "unwrap_version")
    assert retired["version"] == 1 and retired["key_b64"] != unwrapped["key_b64"]

    status, verified = http(call("VerifyFunction", "verify_post"))
    assert (status, verified["ok"], verified["last_verify_error"]) == (200, True, None)
    scheduled = call("VerifyFunction", "verify_scheduled")
    assert (scheduled["tenants_done"], scheduled["failed"]) == (1, [])
    assert [r["tenant_id"] for r in scheduled["results"]] == ["acme"] and scheduled["results"][0]["ok"] is True

    status, progress = http(call("RewrapFunction", "rewrap_post"))
    assert (status, progress["migrated"], progress["complete"]) == (202, 1, True)
    assert call("RewrapFunction", "rewrap_scheduled") == {"tenants_done": 0, "failed": [], "results": []}

    assert call("TenantDataFunction", "tenant_data_get") == {
        "name": "db-admin-password",
        "value_b64": "aHVudGVyMg==",
        "version": 2,
    }
    assert call("TenantDataFunction", "tenant_data_delete") == {"name": "db-admin-password", "deleted": True}

    assert http(call("ProvisionFunction", "provision_destroy")) == (204, None)
    assert http(call("EraseFunction", "erase_delete")) == (204, None)
    assert call("UnwrapFunction", "unwrap")["error"]["code"] == "not_found"
    assert all(items == [] for items in sam_local.snapshot().values())


# ------------------------------------------------------- start-api, start-lambda


@contextlib.contextmanager
def serving(sam_local: SamLocal, command: str) -> Iterator[str]:
    """`sam local start-api` or `start-lambda` on a free port, warm containers; its base URL."""
    port = free_port()
    log = sam_local.build_dir.parent / f"{command}.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [SAM, "local", command, "--port", str(port), "--warm-containers", "LAZY", *sam_local.options],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=SAM_ENV,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-4000:]
            if time.monotonic() > deadline:  # a start-up bound, not a speed check
                pytest.fail(f"sam local {command} did not listen: {log.read_text()[-4000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()  # SAM removes its warm containers on SIGTERM
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def readme_block(after: str) -> str:
    """The first bash block after a phrase of the README's "Try it" section."""
    section = README[README.index("### Try it") :]
    block = re.search(r"```bash\n(.*?)```", section[section.index(after) :], re.S).group(1)
    assert README_BASE_URL in block
    return block


def run_readme_block(block: str, base_url: str) -> list[Any]:
    """Run it as written, against ``base_url``; each curl's answer."""
    assert shutil.which("curl"), "the README's curl block needs curl (apt-get install -y curl)"
    result = subprocess.run(
        ["bash", "-c", block.replace(README_BASE_URL, base_url)], capture_output=True, text=True, timeout=300
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_start_api_serves_the_readme_routes_but_no_claims_reach_the_functions(sam_local):
    """sam local start-api does not run HttpApi JWT authorizers ("Authorizer 'TenantKmsJwt' ...
    was not found, skipping"): the event it builds has no requestContext.authorizer at all, and
    it never reads X-Local-Claims (the local runner's header) nor decodes a bearer token. So
    every admin route answers the functions' own 401, and nothing is written."""
    before = sam_local.snapshot()
    with serving(sam_local, "start-api") as base_url:
        admin = run_readme_block(readme_block("With `make run` going"), base_url)
        assert admin == [UNAUTHORIZED] * 4
        # The Lambda invoke path is not an admin route: the $default route (ConfigureFunction) answers it.
        invoked = run_readme_block(readme_block("through the Lambda invoke path"), base_url)
        assert invoked == [UNAUTHORIZED] * 2

        claims = {"sub": "alice", "tenant_id": "acme", "scope": "tenant-kms/admin"}
        unsigned_jwt = ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in ({"alg": "none"}, claims)
        )
        request = urllib.request.Request(
            f"{base_url}/tenants/acme/kms",
            headers={"X-Local-Claims": json.dumps(claims), "Authorization": f"Bearer {unsigned_jwt}."},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=120)
        assert (refused.value.code, json.loads(refused.value.read())) == (401, UNAUTHORIZED)
    assert sam_local.snapshot() == before


def test_start_lambda_serves_the_readme_direct_invoke_curls(sam_local):
    """The README's admin requests reach the functions as API Gateway would deliver them after
    its JWT authorizer (the sample events, claims included), then the README's direct-invoke
    curls run as written against start-lambda, which serves the Lambda invoke API."""
    sam_local.clear()
    with serving(sam_local, "start-lambda") as base_url:

        def invoke_api(function: str, event_name: str) -> Any:
            request = urllib.request.Request(
                f"{base_url}/2015-03-31/functions/{function}/invocations",
                data=(EVENTS / f"{event_name}.json").read_bytes(),
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=300) as response:
                return json.loads(response.read())

        status, configured = http(invoke_api("ConfigureFunction", "configure_put_global"))
        assert (status, configured["provider"], configured["active_version"]) == (200, "global", 1)
        status, shown = http(invoke_api("ConfigureFunction", "configure_get"))
        assert (status, shown["status"], shown["active_version"]) == (200, "active", 1)
        assert http(invoke_api("ProvisionFunction", "provision_post")) == (201, {"version": 2, "status": "active"})
        status, listed = http(invoke_api("ProvisionFunction", "provision_list"))
        assert [(v["version"], v["status"]) for v in listed["versions"]] == [(1, "retired"), (2, "active")]

        put, unwrapped = run_readme_block(readme_block("through the Lambda invoke path"), base_url)
        assert put == {"name": "db-admin-password", "version": 2}
        assert (unwrapped["tenant_id"], unwrapped["version"], unwrapped["provider"]) == ("acme", 2, "global")
        assert len(base64.b64decode(unwrapped["key_b64"])) == 32
