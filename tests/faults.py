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


class FaultProxy:
    def __init__(self, target: str) -> None:
        self.target = urlsplit(target)
        self.calls: collections.Counter[str] = collections.Counter()
        self._faults: list[str] = []
        self._persistent: str | None = None
        self._lock = threading.Lock()
        self.delay_seconds = 3.0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = (self.headers.get("X-Amz-Target") or "").split(".")[-1] or "unknown"
                fault = proxy._take(action)
                if fault == "throttle":
                    self._answer(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
                elif fault == "5xx":
                    self._answer(500, {"__type": "KMSInternalException", "message": "internal error"})
                else:
                    if fault == "slow":
                        time.sleep(proxy.delay_seconds)
                    self._forward(body)

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=30)
                headers = dict(self.headers.items())  # Host included: it is signed
                upstream.request("POST", self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # unless the client gave up (read timeout)
                upstream.close()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _take(self, action: str) -> str | None:
        with self._lock:
            self.calls[action] += 1
            if self._faults:
                return self._faults.pop(0)
            return self._persistent

    def fail_next(self, count: int, kind: str = "throttle") -> None:
        with self._lock:
            self._faults.extend([kind] * count)

    def fail_always(self, kind: str | None) -> None:
        with self._lock:
            self._persistent = kind

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._faults.clear()
            self._persistent = None

    def close(self) -> None:
        self._server.shutdown()
