"""An HTTP CONNECT proxy on loopback that takes gRPC to Google's host names served by fakes.

gRPC's C core resolves names itself, out of reach of the tests' Python resolver; it does
honour the standard ``grpc_proxy`` setting. Through this proxy the real client dials
``cloudkms.googleapis.com:443`` as deployed and verifies TLS end to end against the roots
named by ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``; the proxy only relays bytes. Any host it does
not serve is refused, so nothing leaves the machine."""

from __future__ import annotations

import contextlib
import socket
import threading


class ConnectProxy:
    def __init__(self, routes: dict[str, int]) -> None:
        """``routes``: ``host:port`` as the client asks for it -> the loopback port serving it."""
        self.routes = dict(routes)
        self.tunnels: list[str] = []  # every CONNECT target asked for, served or not
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = client.recv(4096)
                if not chunk:
                    break
                head += chunk
        request = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        target = request[1] if len(request) == 3 and request[0] == "CONNECT" else ""
        self.tunnels.append(target)
        port = self.routes.get(target)
        if port is None:
            with contextlib.suppress(OSError):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=_relay, args=(upstream, client), daemon=True).start()
        _relay(client, upstream)

    def close(self) -> None:
        self._listener.close()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
