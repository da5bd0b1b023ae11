"""tenant_kms_client against the service as `make run` serves it: the in-process gateway's admin
API and Lambda invoke API on loopback ports, the real handlers, DynamoDB Local behind a fault
proxy (which passes everything through unless a test makes the tables throttle)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace

import boto3
import pytest
from credential_shapes import AWS_KEY_ID
from dynamodb_local import free_port
from faults import DynamoDBFaultProxy
from local_gateway import Gateway, serve
from support import ROOT

from tenant_kms_client import (
    AdminClient,
    Conflict,
    Forbidden,
    InvalidRequest,
    InvokeClient,
    NotFound,
    Retry,
    StaticCredentialsRejected,
    StepUpRequired,
    Unauthorized,
    Unavailable,
    local_claims,
)


@pytest.fixture(scope="module")
def service(dynamodb_local) -> Iterator[SimpleNamespace]:
    proxy = DynamoDBFaultProxy(dynamodb_local.endpoint)
    with pytest.MonkeyPatch.context() as env:
        # Read when the functions first reach their tables: set for as long as they serve.
        env.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint)
        gateway = Gateway()
        for module in gateway.modules.values():
            backoff = getattr(getattr(module, "service", None), "backoff", None)
            if backoff is not None:
                backoff.sleep = lambda _seconds: None  # the service's own retries take no time here
        servers = {api: serve(gateway, port=free_port(), api=api) for api in ("http", "invoke")}
        ports = {api: server.server_address[1] for api, server in servers.items()}
        lambda_client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{ports['invoke']}")
        yield SimpleNamespace(
            url=f"http://127.0.0.1:{ports['http']}",
            invoke_url=f"http://127.0.0.1:{ports['invoke']}",
            lambda_client=lambda_client,
            proxy=proxy,
        )
        for server in servers.values():
            server.shutdown()
            server.server_close()
    proxy.close()


class Sleeps:
    """The client's injected sleep: records each delay; ``then`` runs at the first one."""

    def __init__(self, then=None) -> None:
        self.delays: list[float] = []
        self.then = then

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.then is not None:
            self.then()
            self.then = None


def admin(service, tenant_id: str, sleep=None, **claims) -> AdminClient:
    sent = {"sub": "alice", "tenant_id": tenant_id, "scope": "tenant-kms/admin", **claims}
    retry = Retry(sleep=sleep or Sleeps(), random=lambda: 0.5)
    return AdminClient(service.url, auth=local_claims(sent), retry=retry)


def invoker(service, sleep=None) -> InvokeClient:
    return InvokeClient(service.lambda_client, retry=Retry(sleep=sleep or Sleeps(), random=lambda: 0.5))


def advance(service, job: dict) -> dict:
    """Local runs have no job queue: the job's units go to RewrapFunction by direct invoke."""
    for _ in range(100):
        if job["status"] != "running":
            return job
        unit = json.dumps({"tenant_id": job["tenant_id"], "job_id": job["job_id"]}).encode()
        job = json.loads(service.lambda_client.invoke(FunctionName="RewrapFunction", Payload=unit)["Payload"].read())
    raise AssertionError(job)


def test_a_tenants_lifecycle_through_the_client(service, tenant_id):
    client, data = admin(service, tenant_id), invoker(service)
    view = client.configure(tenant_id, "global")
    assert (view["status"], view["active_version"]) == ("active", 1)
    assert client.config(tenant_id)["provider"] == "global"
    assert client.onboarding(tenant_id)["tenant_id"] == tenant_id
    assert client.verify(tenant_id)["ok"] is True

    assert data.put(tenant_id, "db-admin-password", b"hunter2") == 1
    first = client.provision(tenant_id, idempotency_key="rotate-1")
    assert client.provision(tenant_id, idempotency_key="rotate-1") == first == {"version": 2, "status": "active"}
    assert [(v["version"], v["status"], v["records"]) for v in client.versions(tenant_id)] == [
        (1, "retired", 1),
        (2, "active", 0),
    ]
    job = advance(service, client.start_rewrap(tenant_id))
    assert client.rewrap_job(tenant_id, job["job_id"])["migrated"] == 1
    client.destroy_version(tenant_id, 1)

    record = data.get(tenant_id, "db-admin-password")
    assert (record.value, record.version) == (b"hunter2", 2)
    key = data.unwrap(tenant_id)
    assert (key.version, len(key.key), key.provider) == (2, 32, "global")
    assert "key=" not in repr(key) and key.key.hex() not in repr(key)
    data.delete(tenant_id, "db-admin-password")
    with pytest.raises(NotFound):
        data.get(tenant_id, "db-admin-password")

    client.erase(tenant_id)
    with pytest.raises(Conflict, match="being erased"):  # its records' purge job runs
        data.unwrap(tenant_id)


def test_refusals_raise_typed_errors_and_are_not_retried(service, tenant_id):
    sleeps = Sleeps()
    client = admin(service, tenant_id, sleeps)
    with pytest.raises(StepUpRequired) as stale:
        admin(service, tenant_id, sleeps, auth_time=int(time.time()) - 3600).configure(tenant_id, "global")
    assert (stale.value.status, stale.value.max_age) == (401, 300)
    with pytest.raises(StaticCredentialsRejected) as pasted:
        client.configure(tenant_id, "global", {"key": AWS_KEY_ID})
    assert isinstance(pasted.value, InvalidRequest) and pasted.value.status == 400
    with pytest.raises(InvalidRequest, match="region"):
        client.configure(tenant_id, "customer_kms_aws", {})
    with pytest.raises(Forbidden):
        admin(service, "someone-else", sleeps).config(tenant_id)
    with pytest.raises(Unauthorized):  # no claims at all: the gateway's own 401
        AdminClient(service.url, auth=dict, retry=Retry(sleep=sleeps)).config(tenant_id)
    client.configure(tenant_id, "global")
    with pytest.raises(Conflict, match="not sealed"):
        client.unseal(tenant_id)
    with pytest.raises(NotFound):
        client.rewrap_job(tenant_id, "0" * 32)
    with pytest.raises(InvalidRequest, match="name"):
        invoker(service, sleeps).get(tenant_id, "")
    assert sleeps.delays == []


def test_unavailable_storage_is_retried_until_it_recovers(service, tenant_id):
    admin(service, tenant_id).configure(tenant_id, "global")
    service.proxy.fail("GetItem", "throughput")  # every read throttled until reset
    try:
        sleeps = Sleeps(then=service.proxy.reset)
        assert admin(service, tenant_id, sleeps).config(tenant_id)["status"] == "active"
        assert sleeps.delays == [1.0]  # the service's Retry-After, longer than the first backoff

        service.proxy.fail("GetItem", "throughput")
        sleeps = Sleeps(then=service.proxy.reset)
        assert invoker(service, sleeps).unwrap(tenant_id).version == 1
        assert sleeps.delays == [1.0]  # retry_after_seconds of the invoke's error body
    finally:
        service.proxy.reset()


def test_retries_are_bounded(service, tenant_id):
    admin(service, tenant_id).configure(tenant_id, "global")
    service.proxy.fail("GetItem", "throughput")
    try:
        sleeps = Sleeps()
        client = AdminClient(
            service.url,
            auth=local_claims({"sub": "alice", "tenant_id": tenant_id, "scope": "tenant-kms/admin"}),
            retry=Retry(attempts=3, base_delay=2.0, max_delay=3.0, sleep=sleeps, random=lambda: 1.0),
        )
        with pytest.raises(Unavailable) as failed:
            client.config(tenant_id)
        assert (failed.value.status, failed.value.retry_after) == (503, 1)
        assert sleeps.delays == [2.0, 3.0]  # three attempts; backoff doubling, capped at max_delay
    finally:
        service.proxy.reset()


def test_the_readme_example_runs_as_written_against_the_local_service(service, tenant_id, capsys):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme[readme.index("### Python client") :], re.S).group(1)
    for written, actual in {
        "http://127.0.0.1:3000": service.url,
        "http://127.0.0.1:3001": service.invoke_url,
        '"acme"': repr(tenant_id),
    }.items():
        assert written in block, f"the README example no longer uses {written}"
        block = block.replace(written, actual)
    exec(compile(block, "README.md", "exec"), {})
    # The service runs in this process: its log and metric lines (JSON objects) are not the example's.
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith('{"')]
    assert printed == ["active", "{'version': 2, 'status': 'active'}", "b'hunter2'", "not_found 404"]
