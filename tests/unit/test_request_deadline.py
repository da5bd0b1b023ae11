"""When an admin route must have answered: its budget from API Gateway's receipt of the
request (when a live gateway can still be waiting), never past what Lambda leaves the
function; and the budget a provider call is granted."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from support import Clock

from kms_wrapping.aws_kms import client_config
from kms_wrapping.deadline import (
    Deadline,
    DeadlineExceeded,
    bounded_by_deadline,
    current,
    grant,
    left_after,
    running_until,
)
from tenant_kms.api import route_deadline


class Context:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def event(received_ms: int | None) -> dict:
    return {"requestContext": {"timeEpoch": received_ms}} if received_ms is not None else {"requestContext": {}}


def test_the_budget_counts_from_the_gateways_receipt_of_the_request():
    clock = Clock()
    received = clock() - 4  # a cold start took 4 s of the gateway's 30
    deadline = route_deadline(event(int(received * 1000)), Context(900_000), 25, clock)
    assert deadline.at == pytest.approx(received + 25, abs=0.001)
    assert deadline.remaining() == pytest.approx(21, abs=0.001)


@pytest.mark.parametrize("age", [31, 3600, -5])
def test_a_receipt_no_live_gateway_can_wait_for_counts_from_now(age):
    clock = Clock()
    deadline = route_deadline(event(int((clock() - age) * 1000)), Context(900_000), 25, clock)
    assert deadline.at == clock() + 25


@pytest.mark.parametrize("received", [None, "1800000000000", True, 1.8e12])
def test_a_missing_or_malformed_receipt_counts_from_now(received):
    clock = Clock()
    request = {"requestContext": {"timeEpoch": received}}
    assert route_deadline(request, None, 25, clock).at == clock() + 25


def test_the_function_running_out_first_bounds_the_route():
    clock = Clock()
    deadline = route_deadline(event(None), Context(10_000), 25, clock)
    assert deadline.at == clock() + 10 - 0.5  # what the answer needs to get out


def test_a_call_is_granted_what_is_left_and_nothing_once_it_is_spent():
    clock = Clock()
    assert current() is None and grant(60, "Encrypt") == 60  # outside a request: the setting
    with running_until(Deadline(at=clock() + 25, clock=clock)):
        assert grant(5, "Encrypt") == 5
        clock.advance(22)
        assert grant(5, "Encrypt") == pytest.approx(3)
        assert left_after(2.5) and not left_after(3)
        clock.advance(3)
        with pytest.raises(DeadlineExceeded, match="Encrypt"):
            grant(5, "Encrypt")
    assert current() is None


class ThrottlingKms(BaseHTTPRequestHandler):
    """Answers every call as AWS KMS throttling it, asking for a 3 s wait (x-amz-retry-after, ms)."""

    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amz-retry-after", "3000")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_throttled_call_is_not_retried_when_the_wait_the_answer_asks_for_outlasts_the_budget():
    """botocore's standard mode sleeps up to 1 s after a first throttled attempt, but as long as
    the answer's x-amz-retry-after (up to 5 s more): 3 s here, with 2.5 s of budget left."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ThrottlingKms)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kms = bounded_by_deadline(
            boto3.client(
                "kms",
                endpoint_url=f"http://127.0.0.1:{server.server_port}",
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
                config=client_config(max_attempts=4, connect_timeout=1, read_timeout=5),
            )
        )
        clock = Clock()
        with running_until(Deadline(at=clock() + 2.5, clock=clock)), pytest.raises(DeadlineExceeded, match="Decrypt"):
            kms.decrypt(CiphertextBlob=b"sealed")
        assert ThrottlingKms.calls == 1
    finally:
        server.shutdown()
        server.server_close()
