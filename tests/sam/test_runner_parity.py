"""Both local runners answer every bad request alike, and as the deployed API would.

The same requests go to the in-process gateway (local/local_gateway.py) and to `sam local
start-api` / `start-lambda` on the local template (the built artifact in Lambda containers,
LocalClaimsAuthorizer in place of the JWT authorizer): status, Content-Type, the error-type
headers and body must be identical, and nothing may change in the tables.

What "as deployed" means where the local runners cannot be the deployed API:
- X-Local-Claims stands for the claims AdminApi's JWT authorizer verified. Absent or empty,
  the identity source is missing: API Gateway's own 401 {"message":"Unauthorized"}, and no
  function runs. Present but not a JSON object (or an empty one), it is a token the JWT
  authorizer could not use, a 401 deployed: here the function answers that 401
  (`unauthorized`), since sam local's Lambda authorizer can refuse only with a 403 worded by
  sam ("User is not authorized to access this resource"), which API Gateway never says.
- The invoke API answers as `sam local start-lambda` does, which has Lambda's status codes and
  error shape ({"Type", "Message"}, x-amzn-errortype) but its own words: a payload that is not
  JSON is 400 InvalidRequestContent, an unknown function 404 ResourceNotFound, a Qualifier
  (query string) is refused.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import testenv
from dynamodb_local import free_port
from local_gateway import Gateway, serve
from sam_local import SamLocal, stop, wait_listening, write_env_vars, write_local_template
from support import snapshot_tables

pytestmark = pytest.mark.sam

ADMIN_CLAIMS = {"sub": "alice", "tenant_id": "acme", "scope": "tenant-kms/admin"}
INVOKE = "/2015-03-31/functions/{}/invocations"


@dataclass(frozen=True)
class Runner:
    api: int  # port of the admin API
    invoke: int  # port of the Lambda invoke API


@dataclass(frozen=True)
class Case:
    id: str
    port: str  # "api" or "invoke"
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    expected: tuple[int, str | None] = (0, None)  # status, and the error code / message / Type


def claims(raw: str) -> dict[str, str]:
    return {"X-Local-Claims": raw}


def admin() -> dict[str, str]:
    return claims(json.dumps({**ADMIN_CLAIMS, "auth_time": int(time.time())}))


UNAUTHORIZED = (401, "Unauthorized")  # API Gateway's own: no function ran
CASES = [
    # The admin API (start-api, the gateway's admin port).
    Case("no-claims", "api", "GET", "/tenants/acme/kms", expected=UNAUTHORIZED),
    Case("empty-claims", "api", "GET", "/tenants/acme/kms", claims(""), expected=UNAUTHORIZED),
    *(
        Case(f"claims-{name}", "api", "GET", "/tenants/acme/kms", claims(raw), expected=(401, "unauthorized"))
        for name, raw in [
            ("not-json", "not json"),
            ("json-list", '[{"sub": "alice"}]'),
            ("json-string", '"alice"'),
            ("json-number", "42"),
            ("json-null", "null"),
            ("empty-object", "{}"),
        ]
    ),
    Case(
        "claims-without-scope", "api", "GET", "/tenants/acme/kms", claims('{"sub": "bob"}'), expected=(403, "forbidden")
    ),
    Case("oversized-header", "api", "GET", "/tenants/acme/kms", claims("x" * 70_000), expected=(431, None)),
    Case("unknown-route-no-claims", "api", "GET", "/nowhere", expected=UNAUTHORIZED),
    Case("unknown-route", "api", "GET", "/nowhere", {"claims": "admin"}, expected=(404, "not_found")),
    Case(
        "wrong-method", "api", "PATCH", "/tenants/acme/kms", {"claims": "admin"}, expected=(405, "method_not_allowed")
    ),
    Case(
        "body-not-json",
        "api",
        "PUT",
        "/tenants/acme/kms",
        {"claims": "admin", "Content-Type": "application/json"},
        b'{"provider": "global",',
        expected=(400, "invalid_request"),
    ),
    Case(
        "invoke-path-on-admin-api",
        "api",
        "POST",
        INVOKE.format("UnwrapFunction"),
        body=b'{"tenant_id": "acme"}',
        expected=UNAUTHORIZED,
    ),
    Case(
        "public-route-ignores-claims", "api", "GET", "/.well-known/jwks.json", claims("[]"), expected=(404, "not_found")
    ),
    # The invoke API (start-lambda, the gateway's invoke port).
    Case(
        "invoke-payload-not-json",
        "invoke",
        "POST",
        INVOKE.format("UnwrapFunction"),
        body=b'{"tenant_id": ',
        expected=(400, "User"),
    ),
    Case(
        "invoke-unknown-function", "invoke", "POST", INVOKE.format("NoSuchFunction"), body=b"{}", expected=(404, "User")
    ),
    Case("invoke-wrong-method", "invoke", "GET", INVOKE.format("UnwrapFunction"), expected=(405, "LocalService")),
    Case(
        "admin-path-on-invoke-api",
        "invoke",
        "GET",
        "/tenants/acme/kms",
        {"claims": "admin"},
        expected=(404, "LocalService"),
    ),
    Case(
        "invoke-qualifier",
        "invoke",
        "POST",
        INVOKE.format("UnwrapFunction") + "?Qualifier=%24LATEST",
        body=b"{}",
        expected=(400, "User"),
    ),
    Case(
        "invoke-log-tail",
        "invoke",
        "POST",
        INVOKE.format("UnwrapFunction"),
        {"X-Amz-Log-Type": "Tail"},
        b"{}",
        expected=(501, "LocalService"),
    ),
    Case(
        "invoke-payload-list",
        "invoke",
        "POST",
        INVOKE.format("UnwrapFunction"),
        body=b"[]",
        expected=(200, "invalid_request"),
    ),
    Case(
        "invoke-payload-string",
        "invoke",
        "POST",
        INVOKE.format("UnwrapFunction"),
        body=b'"acme"',
        expected=(200, "invalid_request"),
    ),
    Case(
        "invoke-payload-empty",
        "invoke",
        "POST",
        INVOKE.format("UnwrapFunction"),
        body=b"",
        expected=(200, "invalid_request"),
    ),
    Case(
        "invoke-by-arn-unknown-tenant",
        "invoke",
        "POST",
        INVOKE.format("arn:aws:lambda:us-east-1:123456789012:function:UnwrapFunction"),
        body=b'{"tenant_id": "nobody"}',
        expected=(200, "not_found"),
    ),
]
# One case for each function the cases reach under sam local.
WARM_UP = ("unknown-route", "public-route-ignores-claims", "invoke-payload-list")


@pytest.fixture(scope="module")
def gateway() -> Iterator[Runner]:
    """The in-process gateway on ports of its own, as `make run RUNNER=gateway` serves it."""
    instance = Gateway()
    servers = [serve(instance, port=free_port(), api=api) for api in ("http", "invoke")]
    yield Runner(api=servers[0].server_address[1], invoke=servers[1].server_address[1])
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def sam(invoke_image, sam_build, dynamodb_local, tmp_path_factory) -> Iterator[Runner]:
    """start-api and start-lambda on the local template, as `make run RUNNER=sam` serves them,
    against the same DynamoDB Local tables as the gateway."""
    workdir = tmp_path_factory.mktemp("runner-parity")
    local = SamLocal(
        write_local_template(sam_build),
        invoke_image,
        write_env_vars(
            workdir / "env-vars.json",
            tables=testenv.TABLES,
            master_key_b64=base64.b64encode(testenv.MASTER_KEY).decode(),
            dynamodb_port=dynamodb_local.port,
        ),
    )
    with contextlib.ExitStack() as started:
        ports, processes = {}, {}
        for command in ("start-api", "start-lambda"):  # both start side by side
            ports[command] = free_port()
            with (workdir / f"{command}.log").open("w") as out:
                processes[command] = local.start(command, ports[command], out)
            started.callback(stop, processes[command])
        for command, process in processes.items():
            if not wait_listening(ports[command], process, timeout=120):  # a start-up bound, not a speed check
                pytest.fail(f"sam local {command} did not listen: {(workdir / f'{command}.log').read_text()[-4000:]}")
        runner = Runner(api=ports["start-api"], invoke=ports["start-lambda"])
        # Each function the cases reach (the authorizer too) starts its container now, side by
        # side rather than one after another.
        warming = [case for case in CASES if case.id in WARM_UP]
        with ThreadPoolExecutor(len(warming)) as pool:
            list(pool.map(lambda case: send(getattr(runner, case.port), case), warming))
        yield runner


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str | None]  # the ones a caller acts on
    body: Any  # parsed when JSON

    @property
    def said(self) -> str | None:
        """The error code, API Gateway's message or Lambda's error Type."""
        if not isinstance(self.body, dict):
            return None
        error = self.body.get("error")
        if isinstance(error, dict):
            return error.get("code")
        return self.body.get("message") or self.body.get("Type")


def send(port: int, case: Case) -> Answer:
    headers = {k: v for k, v in case.headers.items() if k != "claims"}
    if case.headers.get("claims") == "admin":  # logged in just now
        headers.update(admin())
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(case.method, case.path, body=case.body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    content_type = response.getheader("Content-Type")
    body: Any = data
    if content_type and content_type.startswith("application/json") and data:
        body = json.loads(data)
    kept = ("Content-Type", "x-amzn-errortype", "X-Amz-Function-Error", "WWW-Authenticate")
    return Answer(response.status, {name: response.getheader(name) for name in kept}, body)


@pytest.fixture(scope="module")
def tables(dynamodb_local):
    return boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_both_runners_answer_alike(case, gateway, sam, tables):
    before = snapshot_tables(testenv.TABLES, tables)
    answers = {}
    for name, runner in (("gateway", gateway), ("sam", sam)):
        answers[name] = send(getattr(runner, case.port), case)
    assert answers["gateway"] == answers["sam"]
    answer = answers["sam"]
    assert (answer.status, answer.said) == case.expected, answer
    assert snapshot_tables(testenv.TABLES, tables) == before
