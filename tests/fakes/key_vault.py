"""A wire-level fake of Azure Key Vault and Managed HSM keys, served over TLS as
``https://<vault>.vault.azure.net`` / ``https://<hsm>.managedhsm.azure.net`` (see
``azure_hosts``), for the real azure-core pipeline.

As strict as the service on what the adapter relies on: ``api-version`` is required; an
unauthenticated request gets a 401 Bearer challenge naming the vault's Entra tenant and
resource; a token must be one the Entra fake issued, unexpired, for this tenant and this
resource; the caller's application needs a role assignment (*Key Vault Crypto User*:
get, wrapKey, unwrapKey, sign, ...) or gets 403 ForbiddenByRbac. GET of a key answers its
public JWK (RSA n/e; an oct-HSM key without key material), as the service does, so a
client that can read the key can wrap locally. ``wrapkey``/``unwrapkey`` do real
RSA-OAEP-256 or AES key wrap and ``sign`` real RS256 with keys the fake holds; a disabled
key or key version answers 403 KeyDisabled to operations. Keys have versions: a new one
becomes what the unversioned key id names (GET and operations without a version use it),
and a wrapped key unwraps only under the version that wrapped it."""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from fakes.azure_hosts import JsonHandler, serve_https
from fakes.entra_id import FakeEntraId

OAEP_256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
PATH = re.compile(r"^/keys/(?P<name>[^/]+)(?:/(?P<version>[0-9a-f]*))?(?:/(?P<op>wrapkey|unwrapkey|sign))?/?$")
CRYPTO_USER_OPS = {"get", "wrapkey", "unwrapkey", "sign"}
ALGORITHMS = {"RSA": {"RSA-OAEP-256", "RSA-OAEP", "RSA1_5"}, "RSA-HSM": {"RSA-OAEP-256", "RSA-OAEP", "RSA1_5"}}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class VaultKey:
    host: str
    name: str
    kind: str = "RSA"  # RSA, RSA-HSM, or oct-HSM (a Managed HSM AES key)
    versions: dict[str, object] = field(default_factory=dict)
    current: str = ""
    enabled: bool = True
    disabled_versions: set[str] = field(default_factory=set)
    # Applications (client ids) holding Key Vault Crypto User on this key.
    crypto_users: set[str] = field(default_factory=set)

    @property
    def rsa(self) -> bool:
        return self.kind.startswith("RSA")

    def rotate(self) -> str:
        """A new version, which an unversioned key id names from now on; older versions stay usable."""
        version = uuid.uuid4().hex
        self.versions[version] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048) if self.rsa else os.urandom(32)
        )
        self.current = version
        return version

    def kid(self, version: str) -> str:
        return f"https://{self.host}/keys/{self.name}/{version}"

    def jwk(self, version: str) -> dict:
        jwk = {"kid": self.kid(version), "kty": self.kind}
        if self.rsa:
            numbers = self.versions[version].public_key().public_numbers()
            jwk.update(
                key_ops=["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
                n=b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                e=b64url(numbers.e.to_bytes(3, "big")),
            )
        else:
            jwk.update(key_ops=["wrapKey", "unwrapKey", "encrypt", "decrypt"])
        return jwk


class FakeKeyVault:
    def __init__(self, entra: FakeEntraId, cert_file, key_file) -> None:
        self.entra = entra
        self.vault_tenants: dict[str, str] = {}  # host -> the Entra tenant the vault belongs to
        self.keys: dict[tuple[str, str], VaultKey] = {}
        self.requests: list[dict] = []
        self.challenges = 0
        self._faults: list[int | str] = []
        self._persistent: int | str | None = None
        self.hang_seconds = 3.0
        # The wait a throttled answer asks for. Key Vault counts its limits per 10 s window and
        # names a wait in Retry-After; 0 spares tests that do not measure it real sleeps.
        self.retry_after_seconds = 0
        self._lock = threading.Lock()
        vault = self

        class Handler(JsonHandler):
            def _error(self, status: int, code: str, message: str, inner: str | None = None) -> None:
                error: dict = {"code": code, "message": message}
                if inner:
                    error["innererror"] = {"code": inner}
                self.answer(status, {"error": error})

            def _challenge(
                self, host: str, message: str = "AKV10000: Request is missing a Bearer or PoP token."
            ) -> None:
                resource = (
                    "https://managedhsm.azure.net"
                    if host.endswith(".managedhsm.azure.net")
                    else ("https://vault.azure.net")
                )
                tenant = vault.vault_tenants.get(host, "00000000-0000-0000-0000-000000000000")
                with vault._lock:
                    vault.challenges += 1
                challenge = f'Bearer authorization="https://login.microsoftonline.com/{tenant}", resource="{resource}"'
                self.answer(
                    401, {"error": {"code": "Unauthorized", "message": message}}, {"WWW-Authenticate": challenge}
                )

            def _handle(self) -> None:
                raw = self.body()
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                path, _, query = self.path.partition("?")
                if not parse_qs(query).get("api-version"):
                    return self._error(400, "BadParameter", "The api-version query parameter is missing.")
                authorization = self.headers.get("Authorization", "")
                if not authorization.startswith("Bearer "):
                    return self._challenge(host)
                issued = vault.entra.token(authorization.removeprefix("Bearer "))
                if issued is None:  # expired, revoked or never issued: challenged again
                    return self._challenge(host, "[TokenExpired] Error validating token: 'S2S12086'.")
                resource = (
                    "https://managedhsm.azure.net"
                    if host.endswith(".managedhsm.azure.net")
                    else ("https://vault.azure.net")
                )
                if issued.resource != resource or issued.tenant != vault.vault_tenants.get(host):
                    return self._error(401, "Unauthorized", "AKV10022: Invalid audience or issuer.")
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return self._error(400, "BadParameter", "The request body is not JSON.")
                record = {"method": self.command, "host": host, "path": path, "body": body, "app": issued.client_id}
                with vault._lock:
                    vault.requests.append(record)
                fault = vault._fault()
                if fault in ("drop", "hang"):  # the connection closes with no answer (after a while)
                    time.sleep(vault.hang_seconds if fault == "hang" else 0)
                    self.close_connection = True
                    return None
                if fault:
                    if fault == 429:
                        return self.answer(
                            429,
                            {"error": {"code": "Throttled", "message": "slow down"}},
                            {"Retry-After": str(vault.retry_after_seconds)},
                        )
                    if fault == 502:  # a gateway in front of the vault: HTML, not JSON
                        return self.answer(502, raw=b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"})
                    return self._error(fault, "InternalServerError", "try again")
                match = PATH.match(path)
                if not match or (self.command == "GET") == bool(match["op"]):
                    return self._error(405, "MethodNotAllowed", "Not a key operation")
                key = vault.keys.get((host, match["name"]))
                operation = match["op"] or "get"
                if key is None or issued.client_id not in key.crypto_users:
                    # Without a role assignment the vault does not say whether the key exists.
                    if key is None and issued.client_id in vault._users_of(host):
                        return self._error(404, "KeyNotFound", f"A key with (name/id) {match['name']} was not found")
                    return self._error(
                        403,
                        "Forbidden",
                        f"Caller is not authorized to perform action on resource ({operation}).",
                        "ForbiddenByRbac",
                    )
                if operation not in CRYPTO_USER_OPS:
                    return self._error(403, "Forbidden", "Operation not permitted", "ForbiddenByRbac")
                version = match["version"] or key.current
                secret = key.versions.get(version)
                if secret is None:
                    return self._error(
                        404, "KeyNotFound", f"A key with (name/id) {match['name']}/{version} was not found"
                    )
                record["kid"] = key.kid(version)
                enabled = key.enabled and version not in key.disabled_versions
                if operation == "get":
                    attributes = {"enabled": enabled, "created": 1_700_000_000, "recoveryLevel": "Recoverable"}
                    return self.answer(200, {"key": key.jwk(version), "attributes": attributes})
                if not enabled:
                    return self._error(
                        403, "Forbidden", f"Operation {operation} is not allowed on a disabled key.", "KeyDisabled"
                    )
                alg, value = body.get("alg"), body.get("value")
                if not isinstance(value, str):
                    return self._error(400, "BadParameter", "Property 'value' is required.")
                data = unb64url(value)
                try:
                    result = vault._operate(key, secret, operation, alg, data, record)
                except ValueError as exc:
                    return self._error(400, "BadParameter", str(exc))
                return self.answer(200, {"kid": key.kid(version), "value": b64url(result)})

            do_GET = do_POST = _handle

        self._server = serve_https(Handler, cert_file, key_file)
        self.port = self._server.server_address[1]

    def _operate(self, key: VaultKey, secret, operation: str, alg, data: bytes, record: dict) -> bytes:
        if operation == "sign":
            if not key.rsa or alg != "RS256" or len(data) != 32:
                raise ValueError(f"{alg} signing of {len(data)} bytes is not valid for a {key.kind} key.")
            return secret.sign(data, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        if key.rsa:
            if alg not in ALGORITHMS[key.kind]:
                raise ValueError(f"{alg} is not a valid algorithm for a {key.kind} key.")
            if alg != "RSA-OAEP-256":
                raise ValueError(f"{alg} is not exercised by this fake.")
            if operation == "wrapkey":
                record["binding"] = data[:32]
                return secret.public_key().encrypt(data, OAEP_256)
            try:
                plain = secret.decrypt(data, OAEP_256)
            except ValueError:
                raise ValueError("Unwrap failed: the ciphertext is invalid.") from None
            record["binding"] = plain[:32]
            return plain
        if alg != "A256KW":
            raise ValueError(f"{alg} is not a valid algorithm for a {key.kind} key.")
        if operation == "wrapkey":
            record["binding"] = data[:32]
            return keywrap.aes_key_wrap(secret, data)
        try:
            plain = keywrap.aes_key_unwrap(secret, data)
        except (ValueError, keywrap.InvalidUnwrap):
            raise ValueError("Unwrap failed: the ciphertext is invalid.") from None
        record["binding"] = plain[:32]
        return plain

    def _users_of(self, host: str) -> set[str]:
        return {user for (h, _), key in self.keys.items() if h == host for user in key.crypto_users}

    # --- what the key's owner controls ----------------------------------------------------
    def create_vault(self, host: str, tenant: str) -> None:
        self.vault_tenants[host] = tenant

    def create_key(self, host: str, name: str, *, kind: str = "RSA", users: tuple[str, ...] = ()) -> VaultKey:
        key = VaultKey(host=host, name=name, kind=kind, crypto_users=set(users))
        key.rotate()
        self.keys[(host, name)] = key
        return key

    def key(self, key_id: str) -> VaultKey:
        host, _, rest = key_id.removeprefix("https://").partition("/keys/")
        return self.keys[(host, rest.split("/")[0])]

    def public_key(self, kid: str) -> rsa.RSAPublicKey:
        return self.key(kid).versions[kid.rsplit("/", 1)[1]].public_key()

    def calls(self, operation: str, app: str | None = None) -> list[dict]:
        def op(record: dict) -> str:
            tail = record["path"].rstrip("/").rsplit("/", 1)[1]
            return tail if tail in ("wrapkey", "unwrapkey", "sign") else "get"

        return [r for r in self.requests if op(r) == operation and app in (None, r["app"])]

    # --- faults ---------------------------------------------------------------------------
    def fail_next(self, count: int, status: int | str) -> None:
        """``status``: an HTTP status, "drop" (close with no answer) or "hang" (then drop)."""
        with self._lock:
            self._faults.extend([status] * count)

    def fail_always(self, status: int | str | None) -> None:
        """Every answer from now on; ``None`` ends every fault."""
        with self._lock:
            self._persistent = status
            if status is None:
                self._faults.clear()

    def _fault(self) -> int | str | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else self._persistent

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
