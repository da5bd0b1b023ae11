"""Helpers shared by the tests: function instances, sample events, table snapshots."""

from __future__ import annotations

import base64
import collections
import contextlib
import copy
import functools
import io
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import boto3
from local_gateway import (
    LocalContext,
    Route,
    function_specs,
    http_event,
    load_handler_module,
    routes_from_template,
)
from local_tables import load_template

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
_instances = itertools.count()
# Lambda's longest timeout: a job run by a test on a loaded machine must not stop at its deadline.
JOB_TIMEOUT_MS = 900_000

FUNCTION_DIRS = {
    "configure": "ConfigureFunction",
    "verify": "VerifyFunction",
    "provision": "ProvisionFunction",
    "unwrap": "UnwrapFunction",
    "rewrap": "RewrapFunction",
    "tenant_data": "TenantDataFunction",
    "erase": "EraseFunction",
    "federation": "FederationFunction",
}


@functools.cache
def parsed_template() -> dict[str, Any]:
    """template.yaml, parsed once per session rather than once per function instance."""
    return load_template()


class Function:
    """One instance of a function, as Lambda would run it: its module imported afresh."""

    def __init__(self, name: str) -> None:
        self.logical_id = FUNCTION_DIRS[name]
        code_uri, handler = function_specs(parsed_template())[self.logical_id]
        self.module = load_handler_module(code_uri, handler, fresh_name=f"fn_{name}_{next(_instances)}")
        # Gone with the instance: sys.modules would keep every instance's clients and loaded
        # service models (~8 MB each) until the session ends.
        weakref.finalize(self, sys.modules.pop, self.module.__name__, None)
        self.service = getattr(self.module, "service", None)  # the public issuer documents hold none

    def __call__(self, event: dict[str, Any], *, timeout_ms: int = 30_000) -> dict[str, Any]:
        return self.module.lambda_handler(event, LocalContext(self.logical_id, timeout_ms=timeout_ms))

    def http(self, event: dict[str, Any]) -> tuple[int, Any]:
        response = self(event)
        body = response.get("body")
        return response["statusCode"], json.loads(body) if body else None

    @classmethod
    def serving(cls, method: str, route: str) -> Function:
        """The function template.yaml routes ``method route`` to."""
        by_logical_id = {logical_id: name for name, logical_id in FUNCTION_DIRS.items()}
        return cls(by_logical_id[declared_route(method, route).function])


def declared_route(method: str, route: str) -> Route:
    (found,) = [r for r in routes_from_template(parsed_template())[0] if (r.method, r.path) == (method, route)]
    return found


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def fresh_sample(name: str) -> dict[str, Any]:
    """A sample as sent now: where its caller logged in (``auth_time``), they just did."""
    event = sample(name)
    claims = ((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt", {}).get("claims") or {}
    return step_up(event) if "auth_time" in claims else event


def http_sample(
    name: str,
    tenant_id: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    claims: dict[str, Any] | str | None = "sample",
    version: int | str | None = None,
    auth_time: float | str | None = "now",
) -> dict[str, Any]:
    """A sample HTTP API event re-targeted at ``tenant_id`` (its claims follow, unless given).

    The caller logged in just now (claim ``auth_time``), unless ``auth_time`` says when, or
    None for a token without the claim."""
    event = copy.deepcopy(sample(name))
    path = event["rawPath"].replace("/tenants/acme", f"/tenants/{tenant_id}", 1)
    if version is not None:
        path = path.rsplit("/", 1)[0] + f"/{version}"
        event["pathParameters"]["version"] = str(version)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    if "pathParameters" in event:
        event["pathParameters"]["tenant_id"] = tenant_id
    authorizer = event["requestContext"].get("authorizer")
    if claims == "sample":
        authorizer["jwt"]["claims"]["tenant_id"] = tenant_id
    elif claims is None:
        event["requestContext"].pop("authorizer", None)
    else:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": dict(claims), "scopes": None}}
    claims_now = ((event["requestContext"].get("authorizer") or {}).get("jwt") or {}).get("claims")
    if isinstance(claims_now, dict):
        claims_now.pop("auth_time", None)
        if auth_time is not None:
            claims_now["auth_time"] = int(time.time()) if auth_time == "now" else auth_time
    if body is not None:
        event["body"] = json.dumps(body)
        event["headers"]["content-type"] = "application/json"
    if raw_body is not None:
        event["body"] = raw_body
        event["headers"]["content-type"] = "application/json"
    return event


def invoke_sample(sample_name: str, tenant_id: str, **changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(sample(sample_name))
    event["tenant_id"] = tenant_id
    event.update(changes)
    return event


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def snapshot_tables(tables: dict[str, str], client: Any = None) -> dict[str, list[dict[str, Any]]]:
    """Every item of every table, in a stable order: for byte-for-byte before/after checks.
    ``client``: another DynamoDB Local than the session's."""
    client = client or boto3.client("dynamodb")
    snapshot = {}
    for name in tables.values():
        items = []
        for page in client.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
            items.extend(page["Items"])
        snapshot[name] = sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=str))
    return snapshot


def partition_items(table: str, partition: str, client: Any = None) -> list[dict[str, Any]]:
    """Every item of one partition (``tenant_id`` = ``partition``), every page, read consistently."""
    client = client or boto3.client("dynamodb")
    pages = client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": partition}},
        ConsistentRead=True,
    )
    return [item for page in pages for item in page["Items"]]


@contextlib.contextmanager
def structured_logs() -> Iterator[io.StringIO]:
    """Everything the service logs, formatted exactly as Lambda would ship it to CloudWatch."""
    from tenant_kms.observability import logger

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    service_logger = logging.getLogger(logger.service)
    service_logger.addHandler(handler)
    try:
        yield buffer
    finally:
        service_logger.removeHandler(handler)


def emf_metrics(output: str) -> dict[str, list[float]]:
    """Every metric in the EMF lines a run printed (namespace TenantKMS), by name."""
    found: dict[str, list[float]] = {}
    for line in output.splitlines():
        if not (line.startswith("{") and '"_aws"' in line):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "TenantKMS", directive
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                found.setdefault(metric["Name"], []).extend(value if isinstance(value, list) else [value])
    return found


def encodings(secret: bytes) -> list[str]:
    """The ways a key could show up in text: hex, base64 (padded or not), URL-safe base64, and
    its bytes repr (a formatted ``{key!r}``), as printed and as a JSON log line escapes it."""
    shown = repr(secret)[2:-1]
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        shown,
        json.dumps(shown)[1:-1],
    ]


def assert_no_key_material(text: str, keys: list[bytes]) -> None:
    for key in keys:
        for encoded in encodings(key):
            assert encoded not in text, "key material in captured output"


class Clock:
    """An injectable clock for session TTLs: time moves only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def records_on_a_retired_version(tenant_id: str, count: int) -> dict[str, bytes]:
    """A tenant on the global wrap with ``count`` records under version 1, now retired."""
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[0] == 200
    data = Function("tenant_data")
    values = {f"rec-{i:03d}": secrets.token_bytes(32) for i in range(count)}
    for name, value in values.items():
        assert data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))["version"] == 1
    assert Function("provision").http(http_sample("provision_post", tenant_id))[0] == 201
    return values


def read_all(tenant_id: str, names) -> dict[str, tuple[bytes, int]]:
    """Each record's plaintext and version, read through a fresh tenant data function."""
    data = Function("tenant_data")
    result = {}
    for name in names:
        got = data(invoke_sample("tenant_data_get", tenant_id, name=name))
        result[name] = (base64.b64decode(got["value_b64"]), got["version"])
    return result


def record_counts(tenant_id: str) -> dict[int, int]:
    """Records each version counts, as GET …/keys lists them."""
    versions = Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]
    return {v["version"]: v["records"] for v in versions}


def rewrap_job_get(tenant_id: str, job_id: str, **kwargs: Any) -> dict[str, Any]:
    """GET /tenants/{tenant_id}/rewrap/{job_id}: rawPath percent-encoded, pathParameters decoded."""
    event = http_sample("rewrap_job_get", tenant_id, **kwargs)
    raw = quote(job_id, safe="")
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/tenants/{tenant_id}/rewrap/{raw}"
    event["pathParameters"]["job_id"] = job_id
    return event


def job_unit(job: dict[str, Any]) -> dict[str, str]:
    """A rewrap job's unit of work, as RewrapFunction takes it by direct invoke."""
    return {"tenant_id": job["tenant_id"], "job_id": job["job_id"]}


def run_job(rewrap: Function, job: dict[str, Any], *, batches: int = 1000) -> dict[str, Any]:
    """Advance a job through its unit of work until it finishes; its last view."""
    for _ in range(batches):
        if job["status"] != "running":
            return job
        job = rewrap(job_unit(job), timeout_ms=JOB_TIMEOUT_MS)
        assert "job_id" in job, job  # not an error answer
    raise AssertionError(f"job still running after {batches} batches: {job}")


def purge_job(tenant_id: str, client: Any = None) -> dict[str, Any] | None:
    """The erased tenant's running purge job, as a unit to advance (None: no purge runs)."""
    client = client or boto3.client("dynamodb")
    slot = client.get_item(
        TableName=os.environ["JOB_TABLE"],  # the deployment's, as the functions read it
        Key={"tenant_id": {"S": tenant_id}, "job_id": {"S": "running#purge"}},
        ConsistentRead=True,
    ).get("Item")
    return None if slot is None else {"tenant_id": tenant_id, "job_id": slot["current"]["S"], "status": "running"}


def run_purge(tenant_id: str, rewrap: Function | None = None) -> dict[str, Any]:
    """After DELETE /tenants/{tenant_id} answered: its purge job, run to the end."""
    job = purge_job(tenant_id)
    assert job is not None, f"no purge job runs for {tenant_id}"
    return run_job(rewrap or Function("rewrap"), job)


def run_rewrap(tenant_id: str, rewrap: Function | None = None) -> dict[str, Any]:
    """POST …/rewrap (202: a job, nothing moved by the request), then its job to the end."""
    rewrap = rewrap or Function("rewrap")
    status, job = rewrap.http(http_sample("rewrap_post", tenant_id))
    assert status == 202 and job["status"] in ("running", "succeeded", "failed"), (status, job)
    return run_job(rewrap, job)


def rewrap_wrapping_keys(*tenants: str, rewrap: Function | None = None) -> dict[str, int]:
    """The re-wrap sweep's visit of each tenant, as its units run it (the sweep itself, through
    its queue, is tests/integration/test_key_rotation.py's); what became of the versions, summed."""
    rewrap = rewrap or Function("rewrap")
    work = rewrap.module.sweeps.sweeps["rewrap_wrapping_keys"].work
    totals: collections.Counter[str] = collections.Counter()
    for tenant_id in tenants:
        totals.update(work(tenant_id, lambda: False))
    return dict(totals)


def read_record(data: Function, tenant_id: str, name: str) -> tuple[bytes, int] | str:
    """A record's plaintext and version through the tenant data function, or its error code."""
    answer = data(invoke_sample("tenant_data_get", tenant_id, name=name))
    if "error" in answer:
        return answer["error"]["code"]
    return base64.b64decode(answer["value_b64"]), answer["version"]


def key_versions(tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's version views, as GET …/keys lists them."""
    return Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]


def configured_global(tenant_id: str) -> dict[str, Any]:
    """The config view after configuring the tenant on the global wrap."""
    status, view = Function("configure").http(http_sample("configure_put_global", tenant_id))
    assert status == 200, view
    return view


def readme_block(after: str) -> str:
    """The first bash block of the README after the first occurrence of ``after``."""
    readme = (ROOT / "README.md").read_text()
    return re.search(r"```bash\n(.*?)```", readme[readme.index(after) :], re.S).group(1)


def run_readme_block(after: str, urls: dict[str, str] | None = None) -> list[Any]:
    """Run that block as written (each URL in ``urls`` pointed elsewhere); each curl's answer."""
    assert shutil.which("curl"), "the README's curl blocks need curl (apt-get install -y curl)"
    block = readme_block(after)
    for written, actual in (urls or {}).items():
        assert written in block, f"the README block no longer uses {written}"
        block = block.replace(written, actual)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def api_event(
    method: str,
    route: str,
    tenant_segment: str,
    *,
    stage: str = "$default",
    claims: dict[str, Any] | None = None,
    body: Any = None,
    version: int = 1,
) -> dict[str, Any]:
    """The event API Gateway sends for ``method route`` when the caller wrote ``tenant_segment``
    into the URL: rawPath as sent (with the stage prefix of a named stage), pathParameters
    percent-decoded once, routeKey the declared route."""
    segments = {"tenant_id": tenant_segment, "version": str(version), "job_id": "0" * 32}
    path = re.sub(r"\{([^}]+)\}", lambda m: segments[m.group(1)], route)
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    names = re.findall(r"\{([^}]+)\}", route)
    event = http_event(
        method,
        raw_path,
        route=declared_route(method, route),
        path_parameters={name: unquote(segments[name]) for name in names},
        claims=claims,
        body=json.dumps(body).encode() if body is not None else b"",
        headers={"content-type": "application/json"} if body is not None else None,
    )
    event["requestContext"]["stage"] = stage
    return event


def step_up(event: dict[str, Any]) -> dict[str, Any]:
    """The event as sent right after a fresh login: claim ``auth_time`` is now."""
    now = time.time()
    event["requestContext"]["timeEpoch"] = int(now * 1000)
    event["requestContext"]["authorizer"]["jwt"]["claims"]["auth_time"] = int(now)
    return event


@functools.cache
def openapi_document() -> dict[str, Any]:
    return json.loads((ROOT / "docs" / "openapi.json").read_text())


def assert_schema_valid(schema: dict[str, Any], instance: Any) -> None:
    """``instance`` against a schema of docs/openapi.json (its references point into the components)."""
    from jsonschema import Draft202012Validator

    Draft202012Validator({**schema, "components": openapi_document()["components"]}).validate(instance)


def assert_documented(event: dict[str, Any], response: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """The answer to an admin API event is one docs/openapi.json gives for the event's route:
    a status it lists, a body of that status's schema, the headers it names. Status, headers
    and parsed body."""
    method, route = event["routeKey"].split(" ", 1)
    status, headers = response["statusCode"], response.get("headers") or {}
    body = json.loads(response["body"]) if response.get("body") else None
    documented = openapi_document()["paths"][route][method.lower()]["responses"].get(str(status))
    assert documented is not None, f"{method} {route} answered {status}, which the document does not list: {body}"
    if "content" in documented:
        assert_schema_valid(documented["content"]["application/json"]["schema"], body)
    else:
        assert body is None, body
    sent = {name.lower() for name in headers}
    for name in documented.get("headers", {}):
        if name != "WWW-Authenticate" or body["error"]["code"] == "step_up_required":
            assert name.lower() in sent, f"{method} {route} answered {status} without header {name}"
    return status, headers, body
