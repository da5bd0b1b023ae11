"""A loopback HTTP proxy in front of a service fake that injects faults on the wire and
counts what the real SDK client sent: throttling, 5xx and slow answers."""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from botocore.exceptions import ReadTimeoutError


class FaultProxy:
    def __init__(self, target: str) -> None:
        self.target = urlsplit(target)
        self.calls: collections.Counter[str] = collections.Counter()
        self._faults: list[str | tuple[int, dict]] = []
        self._persistent: str | tuple[int, dict] | None = None
        self._lock = threading.Lock()
        self.delay_seconds = 3.0
        self._held_actions: set[str] = set()
        self._release = threading.Event()
        self.held = 0  # requests held back so far
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = (self.headers.get("X-Amz-Target") or "").split(".")[-1] or "unknown"
                proxy.hold_if_asked(action)
                proxy.handle(self, action, body)

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", proxy.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes) -> tuple[int, bytes]:
                answer = self._upstream(body)
                self.send_response(answer[0])
                for name, value in answer[1]:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer[2])))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(answer[2])  # unless the client gave up (read timeout)
                return answer[0], answer[2]

            def _upstream(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                upstream = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=30)
                headers = dict(self.headers.items())  # Host included: it is signed
                headers["Content-Length"] = str(len(body))
                upstream.request("POST", self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                return answer.status, answer.getheaders(), data

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    content_type = "application/x-amz-json-1.1"

    def hold_if_asked(self, action: str) -> None:
        if action in self._held_actions:
            with self._lock:
                self.held += 1
            self._release.wait(60)

    def handle(self, handler, action: str, body: bytes) -> None:
        """Answer one request: a fault, or the service's own answer. A fault given as
        ``(status, payload)`` is answered as it is: an error exactly as the service sends it."""
        fault = self._take(action)
        if isinstance(fault, tuple):
            handler._answer(*fault)
        elif fault == "throttle":
            handler._answer(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
        elif fault == "5xx":
            handler._answer(500, {"__type": "KMSInternalException", "message": "internal error"})
        else:
            if fault == "slow":
                time.sleep(self.delay_seconds)
            handler._forward(body)

    def _take(self, action: str) -> str | tuple[int, dict] | None:
        with self._lock:
            self.calls[action] += 1
            if self._faults:
                return self._faults.pop(0)
            return self._persistent

    def fail_next(self, count: int, kind: str | tuple[int, dict] = "throttle") -> None:
        with self._lock:
            self._faults.extend([kind] * count)

    def fail_always(self, kind: str | tuple[int, dict] | None) -> None:
        with self._lock:
            self._persistent = kind

    def hold(self, action: str) -> None:
        """Keep every request of ``action`` waiting until release()."""
        self._release.clear()
        self._held_actions.add(action)

    def release(self) -> None:
        self._held_actions.clear()
        self._release.set()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._faults.clear()
            self._persistent = None

    def close(self) -> None:
        self._server.shutdown()


DYNAMODB = "com.amazonaws.dynamodb.v20120810#"
DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
THROTTLED = (
    "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your "
    "table or index so please try again shortly."
)
# DynamoDB's own answers (HTTP 400, awsJson1_0) when it cannot serve a request now.
DYNAMODB_ERRORS = {
    "throughput": {
        "__type": f"{DYNAMODB}ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded.",
    },
    "throttle": {"__type": "com.amazon.coral.availability#ThrottlingException", "message": "Rate exceeded"},
    "request_limit": {
        "__type": f"{DYNAMODB}RequestLimitExceeded",
        "message": "Throughput exceeds the current throughput limit for your account.",
    },
}


class DynamoDBFaultProxy(FaultProxy):
    """A FaultProxy in front of DynamoDB Local that answers as DynamoDB does when it throttles.

    Kinds: ``throughput``, ``throttle``, ``request_limit`` (the errors above);
    ``cancel_throttled`` (TransactionCanceledException, every item ThrottlingError);
    ``cancel_conflict`` (TransactionCanceledException, the first item ConditionalCheckFailed:
    a real conflict); ``cancel_in_flight`` (TransactionCanceledException, the first item
    TransactionConflict: another transaction is writing it, contention and not a verdict);
    ``partial`` (BatchWriteItem applies the first half of each table's requests and answers
    the rest as UnprocessedItems; ProvisionedThroughputExceeded when that half is empty, as
    DynamoDB does when it can process none; BatchGetItem reads the first table's keys and
    answers the other tables' as UnprocessedKeys, the same way).
    ``lost_answer``: the request reaches DynamoDB Local and is applied, then the answer is
    lost: 500 InternalServerError, after which DynamoDB documents the outcome as unknown.
    ``writes_allowed``: that many write requests reach DynamoDB Local, every later one is
    throttled, like an instance that stops at that point.
    """

    content_type = "application/x-amz-json-1.0"

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self._rules: list[list] = []
        self.writes_allowed: int | None = None
        self.writes = 0  # write requests DynamoDB Local applied

    def fail(self, actions: set[str] | str, kind: str, times: int | None = None) -> None:
        """Answer ``actions`` with ``kind``: the next ``times`` requests, or all (None)."""
        with self._lock:
            self._rules.append([{actions} if isinstance(actions, str) else set(actions), kind, times])

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._rules.clear()
            self.writes_allowed = None
            self.writes = 0

    def _take(self, action: str) -> str | None:
        with self._lock:
            self.calls[action] += 1
            for rule in self._rules:
                if action in rule[0] and rule[2] != 0:
                    rule[2] = None if rule[2] is None else rule[2] - 1
                    return rule[1]
            if action in DYNAMODB_WRITES and self.writes_allowed is not None and self.writes >= self.writes_allowed:
                return "cancel_throttled" if action == "TransactWriteItems" else "throughput"
            return None

    def handle(self, handler, action: str, body: bytes) -> None:
        fault = self._take(action)
        if fault in DYNAMODB_ERRORS:
            handler._answer(400, DYNAMODB_ERRORS[fault])
        elif fault in ("cancel_throttled", "cancel_conflict", "cancel_in_flight"):
            items = json.loads(body)["TransactItems"]
            reasons = [{"Code": "ThrottlingError", "Message": THROTTLED} for _ in items]
            if fault in ("cancel_conflict", "cancel_in_flight"):
                reasons = [
                    {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed."}
                    if fault == "cancel_conflict"
                    else {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
                ]
                reasons += [{"Code": "None"} for _ in items[1:]]
            codes = ", ".join(r["Code"] for r in reasons)
            message = f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]"
            handler._answer(
                400,
                {
                    "__type": f"{DYNAMODB}TransactionCanceledException",
                    "Message": message,
                    "CancellationReasons": reasons,
                },
            )
        elif fault == "lost_answer":
            status, _, _ = handler._upstream(body)
            if action in DYNAMODB_WRITES and status == 200:
                with self._lock:
                    self.writes += 1
            handler._answer(500, {"__type": f"{DYNAMODB}InternalServerError", "message": "Internal server error"})
        elif fault == "partial" and action == "BatchWriteItem":
            self._partial_batch(handler, json.loads(body))
        elif fault == "partial" and action == "BatchGetItem":
            self._partial_read(handler, json.loads(body))
        else:
            status, _ = handler._forward(body)
            if action in DYNAMODB_WRITES and status == 200:
                with self._lock:
                    self.writes += 1

    def _partial_batch(self, handler, request: dict) -> None:
        applied = {t: reqs[: len(reqs) // 2] for t, reqs in request["RequestItems"].items() if len(reqs) > 1}
        left = {t: reqs[len(reqs) // 2 :] if t in applied else reqs for t, reqs in request["RequestItems"].items()}
        if not applied:
            handler._answer(400, DYNAMODB_ERRORS["throughput"])
            return
        status, _, data = handler._upstream(json.dumps({**request, "RequestItems": applied}).encode())
        answer = json.loads(data)
        if status == 200:
            answer["UnprocessedItems"] = left
            with self._lock:
                self.writes += 1
        handler._answer(status, answer)

    @staticmethod
    def _partial_read(handler, request: dict) -> None:
        first, *rest = request["RequestItems"]
        if not rest:
            handler._answer(400, DYNAMODB_ERRORS["throughput"])
            return
        read = {first: request["RequestItems"][first]}
        status, _, data = handler._upstream(json.dumps({**request, "RequestItems": read}).encode())
        answer = json.loads(data)
        if status == 200:
            answer["UnprocessedKeys"] = {table: request["RequestItems"][table] for table in rest}
        handler._answer(status, answer)


class SlowWire:
    """Every AWS answer (DynamoDB, KMS, STS) takes ``seconds`` of an injected clock: botocore's
    real HTTP sending, with time passing on the clock instead of the wall. An attempt whose
    read timeout is shorter than the answer's delay reads until that timeout, then fails with
    botocore's ReadTimeoutError; the service still received the request and may have acted on
    it, as a real one does. Records what each attempt was granted, and when.

    ``install`` replaces the send of every botocore HTTP session in the process for the test's
    duration (through ``monkeypatch``); answers are slow only while ``on``."""

    def __init__(self, clock, seconds: float, actions: frozenset[str] | None = None) -> None:
        self.clock = clock
        self.seconds = seconds
        self.actions = actions  # only these are slow (X-Amz-Target's operation); None: every one
        self.on = True
        self.sent: list[tuple[str, float, float]] = []  # (action, clock at send, read timeout granted)

    def install(self, monkeypatch) -> SlowWire:
        from botocore.httpsession import URLLib3Session

        real_send = URLLib3Session.send
        wire = self

        def send(session, request):
            if not wire.on:
                return real_send(session, request)
            granted = request.context.get("read_timeout")
            if granted is None:
                config = request.context.get("client_config")
                granted = config.read_timeout if config is not None else 60
            target = request.headers.get("X-Amz-Target", b"")
            action = (target.decode() if isinstance(target, bytes) else str(target)).split(".")[-1] or "unknown"
            wire.sent.append((action, wire.clock(), granted))
            answer = real_send(session, request)
            seconds = wire.seconds if wire.actions is None or action in wire.actions else 0
            if seconds > granted:
                wire.clock.advance(granted)
                raise ReadTimeoutError(endpoint_url=request.url)
            wire.clock.advance(seconds)
            return answer

        monkeypatch.setattr(URLLib3Session, "send", send)
        return self

    def assert_kept_to(self, deadline: float) -> None:
        """No call started at or past ``deadline`` (on the clock), none was granted more than
        what was left of it, and the clock never passed it."""
        assert self.sent
        for action, sent_at, granted in self.sent:
            assert sent_at < deadline, (action, deadline - sent_at)
            assert 0 < granted <= deadline - sent_at, (action, deadline - sent_at, granted)
        assert self.clock() <= deadline
