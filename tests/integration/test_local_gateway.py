"""The in-process gateway answers every request, even where no function answers well.

What sam local cannot be made to do (a function that raises, a request the HTTP layer cannot
read) is checked here against the deployed services' answers; what both runners do is in
tests/sam/test_runner_parity.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from dynamodb_local import free_port
from local_gateway import Gateway, serve
from local_queues import event_sources

ADMIN = json.dumps({"sub": "alice", "tenant_id": "acme", "scope": "tenant-kms/admin"})


def fails(event, context):
    raise RuntimeError("the function failed")


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    gateway = Gateway()
    # A function that raises, in the place of the one the unknown routes reach.
    gateway.modules[gateway.default_function] = SimpleNamespace(lambda_handler=fails)
    gateway.modules["UnwrapFunction"] = SimpleNamespace(lambda_handler=fails)
    servers = {api: serve(gateway, port=free_port(), api=api) for api in ("http", "invoke")}
    yield {api: server.server_address[1] for api, server in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


def send(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_failing_function_behind_the_admin_api_is_api_gateways_500(ports):
    status, headers, body = send(ports["http"], "GET", "/nowhere", {"X-Local-Claims": ADMIN})
    assert (status, headers["Content-Type"], json.loads(body)) == (
        500,
        "application/json",
        {"message": "Internal Server Error"},
    )


def test_a_failing_function_behind_the_invoke_api_is_reported_as_lambda_reports_it(ports):
    status, headers, body = send(
        ports["invoke"], "POST", "/2015-03-31/functions/UnwrapFunction/invocations", body=b"{}"
    )
    assert (status, headers["X-Amz-Function-Error"]) == (200, "Unhandled")
    failure = json.loads(body)
    assert (failure["errorType"], failure["errorMessage"]) == ("RuntimeError", "the function failed")
    assert failure["requestId"] and failure["stackTrace"]


def test_an_invoke_payload_that_is_not_utf8_is_refused_as_not_json(ports):
    status, headers, body = send(
        ports["invoke"], "POST", "/2015-03-31/functions/UnwrapFunction/invocations", body=b"\xff\xfe{"
    )
    assert (status, headers["x-amzn-errortype"], json.loads(body)["Type"]) == (400, "InvalidRequestContent", "User")


@pytest.mark.parametrize("api", ["http", "invoke"])
def test_a_content_length_that_is_not_a_number_is_a_400_not_a_dropped_connection(ports, api):
    with socket.create_connection(("127.0.0.1", ports[api]), timeout=30) as sock:
        sock.sendall(b"POST /tenants/acme/keys HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 400 ")


def test_the_local_runner_plays_the_job_queue_so_a_rewrap_job_runs_to_its_end(queues, monkeypatch, tenant_id):
    """Catches `make run` leaving a rewrap job running for ever (no event source for the job
    queue), or handing a delayed unit over before SQS releases it (README, Try it)."""
    # Given the gateway's functions on the local queues (moto's SQS), two records a batch, 5 s apart
    monkeypatch.setenv("REWRAP_BATCH_RECORDS", "2")
    monkeypatch.setenv("REWRAP_BATCH_INTERVAL_SECONDS", "5")
    gateway = Gateway()
    sources = {
        (source.function, queue): source
        for source in event_sources(queues.client, queues.urls, gateway.invoke)
        for queue, url in queues.urls.items()
        if url == source.queue_url
    }
    assert set(sources) == {
        ("VerifyFunction", "ReverifyQueue"),
        ("VerifyFunction", "RepollSealedQueue"),
        ("RewrapFunction", "RewrapJobQueue"),
        ("RewrapFunction", "RewrapSweepQueue"),
    }
    jobs = sources[("RewrapFunction", "RewrapJobQueue")]
    claims = {"X-Local-Claims": json.dumps(fresh_claims(tenant_id))}

    # and a tenant with three records under its retired version
    body = json.dumps({"provider": "global", "config": {}}).encode()
    assert (
        gateway.handle_http("PUT", f"/tenants/{tenant_id}/kms", {**claims, "Content-Type": "application/json"}, body)[0]
        == 200
    )
    for name in ("a", "b", "c"):
        put = {"op": "put", "tenant_id": tenant_id, "name": name, "value_b64": "aHVudGVyMg=="}
        assert gateway.handle_invoke("POST", INVOKE_DATA, {}, json.dumps(put).encode())[0] == 200
    assert gateway.handle_http("POST", f"/tenants/{tenant_id}/keys", claims, b"")[0] == 201

    # When the rewrap is started, and the job queue's event source polls
    status, headers, _ = gateway.handle_http("POST", f"/tenants/{tenant_id}/rewrap", claims, b"")
    assert status == 202
    assert jobs.poll() == 1  # the first batch

    # Then the next unit waits in the queue for the rate's interval, and is handed over once due
    assert jobs.poll() == 0
    assert jobs.poll(wait_seconds=20) == 1  # a long poll, as Lambda's, returns when it is released
    status, _, shown = gateway.handle_http("GET", headers["Location"], claims, b"")
    job = json.loads(shown)
    assert (status, job["status"], job["migrated"], job["remaining"]) == (200, "succeeded", 3, 0)
    assert queues.depth("RewrapJobQueue") == queues.depth("RewrapJobDeadLetterQueue") == 0


INVOKE_DATA = "/2015-03-31/functions/TenantDataFunction/invocations"


def fresh_claims(tenant_id: str) -> dict:
    return {"sub": "alice", "tenant_id": tenant_id, "scope": "tenant-kms/admin", "auth_time": int(time.time())}
