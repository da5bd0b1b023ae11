"""A wire-level fake of Cloud KMS's Encrypt/Decrypt: a real gRPC server on loopback, serving
TLS as ``cloudkms.googleapis.com``, that the real ``google-cloud-kms`` client reaches as
deployed (Google's endpoint, TLS verified, call credentials) through ``ConnectProxy``.
Every call must carry a bearer token the Google token fake (``FakeGoogleIam``) issued and
has not expired, for a principal bound on the key; it checks the CRC32C fields and the AAD
the way Cloud KMS does, keeps key versions with states and a primary version that can move
(Encrypt uses the primary and names it; Decrypt uses the version the ciphertext names, if
enabled), and can refuse, fail or corrupt on demand."""

from __future__ import annotations

import secrets
import struct
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud import kms_v1

SERVICE = "google.cloud.kms.v1.KeyManagementService"
HOST = "cloudkms.googleapis.com"
# What Cloud KMS answers for a ciphertext or AAD that is not this key's.
DECRYPTION_FAILED = "Decryption failed: verify that 'name' refers to the correct CryptoKey."
UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential."
)
_STATUS = {
    # Google no longer accepts the token it issued us (expired by its clock, revoked).
    "unauthenticated": (grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED),
    "unavailable": (grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable."),
    "deadline": (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded."),
    "exhausted": (grpc.StatusCode.RESOURCE_EXHAUSTED, "Quota exceeded for quota metric 'Cryptographic requests'."),
    "internal": (grpc.StatusCode.INTERNAL, "Internal error encountered."),
}


def _member(binding: str, principal: str) -> bool:
    """IAM membership: the principal itself, or ``principalSet://…/workloadIdentityPools/<pool>/*``."""
    if binding.startswith("principalSet://") and binding.endswith("/*"):
        pool = binding[len("principalSet://") : -1]
        return principal.startswith("principal://" + pool + "subject/")
    return binding == principal


@dataclass
class CryptoKey:
    versions: dict[int, bytes] = field(default_factory=dict)
    states: dict[int, str] = field(default_factory=dict)
    users: set[str] = field(default_factory=set)  # members with roles/cloudkms.cryptoKeyEncrypterDecrypter
    primary: int = 1

    def add_version(self, *, primary: bool = True) -> int:
        number = len(self.versions) + 1
        self.versions[number] = secrets.token_bytes(32)
        self.states[number] = "ENABLED"
        if primary:
            self.primary = number
        return number


class FakeCloudKms:
    def __init__(self, principal_of: Callable[[str], str | None], cert_file: Path, key_file: Path) -> None:
        """``principal_of``: the principal an access token was issued for (None: not a token we
        know, or expired); ``cert_file``/``key_file``: a certificate for ``HOST``."""
        self.keys: dict[str, CryptoKey] = {}
        self.requests: list[tuple[str, object]] = []
        self._principal_of = principal_of
        self._faults: list[str] = []
        self._persistent: str | None = None
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "Encrypt": grpc.unary_unary_rpc_method_handler(
                self._encrypt,
                request_deserializer=kms_v1.EncryptRequest.deserialize,
                response_serializer=kms_v1.EncryptResponse.serialize,
            ),
            "Decrypt": grpc.unary_unary_rpc_method_handler(
                self._decrypt,
                request_deserializer=kms_v1.DecryptRequest.deserialize,
                response_serializer=kms_v1.DecryptResponse.serialize,
            ),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        credentials = grpc.ssl_server_credentials([(Path(key_file).read_bytes(), Path(cert_file).read_bytes())])
        self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()

    # ----------------------------------------------------------------- control

    def create_key(self, name: str, *users: str) -> str:
        self.keys[name] = CryptoKey(users=set(users))
        self.keys[name].add_version()
        return name

    def set_state(self, name: str, version: int, state: str) -> None:
        """ENABLED, DISABLED, DESTROY_SCHEDULED or DESTROYED: only an enabled version encrypts or decrypts."""
        self.keys[name].states[version] = state

    def create_version(self, name: str, *, primary: bool = False) -> int:
        """CreateCryptoKeyVersion: a new version, primary only when asked (as ``--primary`` does)."""
        return self.keys[name].add_version(primary=primary)

    def set_primary(self, name: str, version: int) -> None:
        """UpdateCryptoKeyPrimaryVersion: Encrypt uses it from now on; older versions still decrypt."""
        key = self.keys[name]
        if key.states.get(version) != "ENABLED":
            raise ValueError(f"FAILED_PRECONDITION: version {version} of {name} is not ENABLED")
        key.primary = version

    def fail_next(self, count: int, kind: str) -> None:
        with self._lock:
            self._faults.extend([kind] * count)

    def fail_always(self, kind: str | None) -> None:
        with self._lock:
            self._persistent = kind

    def stop(self) -> None:
        self._server.stop(0)

    def calls(self, method: str) -> list:
        return [request for name, request in self.requests if name == method]

    # ----------------------------------------------------------------- service

    def _fault(self) -> str | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else self._persistent

    def _caller(self, context: grpc.ServicerContext) -> str:
        authorization = dict(context.invocation_metadata()).get("authorization", "")
        principal = self._principal_of(authorization[7:]) if authorization.startswith("Bearer ") else None
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)
        return principal

    def _key(self, name: str, permission: str, context: grpc.ServicerContext) -> CryptoKey:
        caller = self._caller(context)
        key = self.keys.get(name)
        if key is not None and any(_member(user, caller) for user in key.users):
            return key
        if key is None:  # as a caller with rights on the key ring sees it
            context.abort(grpc.StatusCode.NOT_FOUND, f"CryptoKey {name} not found.")
        context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"Permission '{permission}' denied on resource '{name}' (or it may not exist).",
        )

    @staticmethod
    def _check_crc(data: bytes, crc, field_name: str, context: grpc.ServicerContext) -> None:
        if crc is None or crc != google_crc32c.value(data):  # proto-plus unwraps Int64Value
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"The checksum in field {field_name}_crc32c did not match the data in field {field_name}.",
            )

    def _injected(self, fault: str | None, context: grpc.ServicerContext) -> None:
        if fault in _STATUS:
            context.abort(*_STATUS[fault])

    def _encrypt(self, request: kms_v1.EncryptRequest, context: grpc.ServicerContext) -> kms_v1.EncryptResponse:
        self.requests.append(("Encrypt", request))
        fault = self._fault()
        self._injected(fault, context)
        key = self._key(request.name, "cloudkms.cryptoKeyVersions.useToEncrypt", context)
        primary = f"{request.name}/cryptoKeyVersions/{key.primary}"
        if key.states[key.primary] != "ENABLED":
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{primary} is not enabled, current state is: {key.states[key.primary]}.",
            )
        if fault == "request_crc":
            request.plaintext_crc32c = (request.plaintext_crc32c or 0) ^ 1  # damaged on the way in
        self._check_crc(request.plaintext, request.plaintext_crc32c, "plaintext", context)
        self._check_crc(
            request.additional_authenticated_data,
            request.additional_authenticated_data_crc32c,
            "additional_authenticated_data",
            context,
        )
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(key.versions[key.primary]).encrypt(
            nonce, request.plaintext, request.additional_authenticated_data
        )
        ciphertext = struct.pack(">I", key.primary) + nonce + sealed
        crc = google_crc32c.value(ciphertext)
        if fault == "ciphertext_crc":
            crc ^= 1
        if fault == "flip_ciphertext":
            ciphertext = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
        return kms_v1.EncryptResponse(
            name=primary,
            ciphertext=ciphertext,
            ciphertext_crc32c=crc,
            verified_plaintext_crc32c=fault != "unverified",
            verified_additional_authenticated_data_crc32c=True,
        )

    def _decrypt(self, request: kms_v1.DecryptRequest, context: grpc.ServicerContext) -> kms_v1.DecryptResponse:
        self.requests.append(("Decrypt", request))
        fault = self._fault()
        self._injected(fault, context)
        key = self._key(request.name, "cloudkms.cryptoKeyVersions.useToDecrypt", context)
        if fault == "request_crc":
            request.ciphertext_crc32c = (request.ciphertext_crc32c or 0) ^ 1
        self._check_crc(request.ciphertext, request.ciphertext_crc32c, "ciphertext", context)
        self._check_crc(
            request.additional_authenticated_data,
            request.additional_authenticated_data_crc32c,
            "additional_authenticated_data",
            context,
        )
        (version,) = struct.unpack(">I", request.ciphertext[:4]) if len(request.ciphertext) >= 4 else (0,)
        if version not in key.versions:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, DECRYPTION_FAILED)
        if key.states[version] != "ENABLED":
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{request.name}/cryptoKeyVersions/{version} is not enabled, current state is: {key.states[version]}.",
            )
        try:
            plaintext = AESGCM(key.versions[version]).decrypt(
                request.ciphertext[4:16], request.ciphertext[16:], request.additional_authenticated_data
            )
        except InvalidTag:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, DECRYPTION_FAILED)
        crc = google_crc32c.value(plaintext)
        if fault == "plaintext_crc":
            crc ^= 1
        if fault == "flip_plaintext":
            plaintext = bytes([plaintext[0] ^ 1]) + plaintext[1:]
        return kms_v1.DecryptResponse(plaintext=plaintext, plaintext_crc32c=crc, used_primary=version == key.primary)
