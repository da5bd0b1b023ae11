"""A wire-level fake of Azure Key Vault's wrapkey/unwrapkey over HTTPS on loopback, for the
real ``azure-keyvault-keys`` CryptographyClient. It answers the first unauthenticated
request with a Bearer challenge as the real service does, refuses GET of key material (so
the client does every operation remotely), and does real RSA-OAEP-256 with keys it holds."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import re
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOKEN = "fake-entra-token"
OAEP_256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
PATH = re.compile(r"^/keys/(?P<name>[^/]+)(?:/(?P<version>[0-9a-f]*))?(?:/(?P<op>wrapkey|unwrapkey))?$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class VaultKey:
    kind: str = "RSA"  # or "oct-HSM": a Managed HSM AES key
    versions: dict[str, object] = field(default_factory=dict)
    current: str = ""
    enabled: bool = True
    deleted: bool = False

    def rotate(self) -> str:
        version = uuid.uuid4().hex
        self.versions[version] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048) if self.kind == "RSA" else os.urandom(32)
        )
        self.current = version
        return version


class FakeCredential:
    """A TokenCredential standing in for Entra ID; revoking it is the customer deleting the app."""

    def __init__(self) -> None:
        self.revoked = False
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        self.scopes.append(scopes)
        if self.revoked:
            raise ClientAuthenticationError("AADSTS700213: no matching federated identity record")
        return AccessToken(TOKEN, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: dict | None = None) -> AccessTokenInfo:
        token = self.get_token(*scopes)
        return AccessTokenInfo(token.token, token.expires_on)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "vault.pem", directory / "vault.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class FakeKeyVault:
    def __init__(self) -> None:
        self.keys: dict[str, VaultKey] = {}
        self.requests: list[dict] = []
        self.challenges = 0
        self._faults: list[int] = []
        self._persistent: int | None = None
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory()
        self.ca_file, key_file = self_signed_certificate(Path(self._dir.name))
        vault = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, payload: dict | None = None, headers: dict | None = None) -> None:
                data = json.dumps(payload or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: str, message: str, inner: str | None = None) -> None:
                error = {"code": code, "message": message}
                if inner:
                    error["innererror"] = {"code": inner}
                self._answer(status, {"error": error})

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = self.path.split("?")[0]
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    vault.challenges += 1
                    return self._answer(
                        401,
                        headers={
                            "WWW-Authenticate": (
                                'Bearer authorization="https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47",'
                                ' resource="https://vault.azure.net"'
                            )
                        },
                    )
                vault.requests.append({"method": self.command, "path": path, "body": body})
                match = PATH.match(path)
                key = vault.keys.get(match["name"]) if match else None
                if key is None or key.deleted:
                    return self._error(404, "KeyNotFound", "A key with this name was not found")
                if self.command == "GET":  # no 'get' permission: the client then works remotely
                    return self._error(403, "Forbidden", "The user does not have keys get permission")
                fault = vault._fault()
                if fault:
                    return (
                        self._error(
                            fault,
                            "Throttled" if fault == 429 else "InternalError",
                            "try again",
                        )
                        if fault != 429
                        else self._answer(
                            429, {"error": {"code": "Throttled", "message": "slow down"}}, {"Retry-After": "0"}
                        )
                    )
                if not key.enabled:
                    return self._error(
                        403, "Forbidden", f"Operation {match['op']} is not allowed on a disabled key.", "KeyDisabled"
                    )
                version = match["version"] or key.current
                private = key.versions.get(version)
                if private is None:
                    return self._error(404, "KeyNotFound", "A key with this version was not found")
                expected = "RSA-OAEP-256" if key.kind == "RSA" else "A256KW"
                if body.get("alg") != expected:
                    return self._error(400, "BadParameter", f"{body.get('alg')} is not valid for a {key.kind} key")
                kid = f"https://{self.headers['Host']}/keys/{match['name']}/{version}"
                if match["op"] == "wrapkey":
                    vault.requests[-1]["binding"] = unb64url(body["value"])[:32]
                    if key.kind == "RSA":
                        value = private.public_key().encrypt(unb64url(body["value"]), OAEP_256)
                    else:
                        value = keywrap.aes_key_wrap(private, unb64url(body["value"]))
                else:
                    try:
                        if key.kind == "RSA":
                            value = private.decrypt(unb64url(body["value"]), OAEP_256)
                        else:
                            value = keywrap.aes_key_unwrap(private, unb64url(body["value"]))
                    except (ValueError, keywrap.InvalidUnwrap):
                        return self._error(400, "BadParameter", "Unwrap failed: the ciphertext is invalid")
                    vault.requests[-1]["binding"] = value[:32]
                return self._answer(200, {"kid": kid, "value": b64url(value)})

            do_GET = do_POST = _handle

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def create_key(self, name: str, kind: str = "RSA") -> str:
        key = VaultKey(kind=kind)
        key.rotate()
        self.keys[name] = key
        return f"{self.url}/keys/{name}"

    def fail_next(self, count: int, status: int) -> None:
        with self._lock:
            self._faults.extend([status] * count)

    def fail_always(self, status: int | None) -> None:
        with self._lock:
            self._persistent = status

    def _fault(self) -> int | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else self._persistent

    def client_options(self) -> dict:
        return {
            "verify_challenge_resource": False,
            "connection_verify": str(self.ca_file),
            "retry_total": 2,
            "retry_backoff_factor": 0.01,
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._dir.cleanup()
