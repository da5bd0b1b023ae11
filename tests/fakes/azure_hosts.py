"""Azure's public host names served from loopback, so the SDKs reach the fakes exactly as they
reach Azure: by name, over TLS verified against a CA (this test certificate), on the default
port. Name resolution for the Azure hosts is answered here; any other Azure or Entra host
fails to resolve, so nothing can reach a real endpoint."""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

VAULT_HOSTS = ("*.vault.azure.net", "*.managedhsm.azure.net")
ENTRA_HOST = "login.microsoftonline.com"
_NEVER = ("*.azure.net", "*.microsoftonline.com", "*.windows.net", "*.azure.com", "*.microsoft.com")


def certificate(directory: Path, extra_hosts: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for every Azure host the fakes serve, and ``extra_hosts``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenant-kms test Azure")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName(host) for host in (*VAULT_HOSTS, ENTRA_HOST, *extra_hosts, "localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([*names, x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "azure.pem", directory / "azure.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def serve_https(handler: type[BaseHTTPRequestHandler], cert_file: Path, key_file: Path) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def resolve_to_loopback(routes: dict[str, int]) -> Iterator[None]:
    """While open, ``host pattern -> port`` answers name resolution (port 443 goes to the fake's port)."""
    original = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        for pattern, target in routes.items():
            if fnmatch.fnmatch(name.lower(), pattern):
                return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", target))]
        if any(fnmatch.fnmatch(name.lower(), never) for never in _NEVER):
            raise socket.gaierror(socket.EAI_NONAME, f"{name} is not served in tests")
        return original(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(
        self, status: int, payload: object = None, headers: dict | None = None, raw: bytes | None = None
    ) -> None:
        import json

        data = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, *args) -> None:
        pass
