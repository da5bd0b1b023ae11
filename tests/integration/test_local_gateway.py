"""The in-process gateway answers every request, even where no function answers well.

What sam local cannot be made to do (a function that raises, a request the HTTP layer cannot
read) is checked here against the deployed services' answers; what both runners do is in
tests/sam/test_runner_parity.py.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from dynamodb_local import free_port
from local_gateway import Gateway, serve

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
