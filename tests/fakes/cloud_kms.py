"""A wire-level fake of Cloud KMS's Encrypt/Decrypt: a real gRPC server on loopback that the
real ``google-cloud-kms`` client talks to. It checks the CRC32C fields and the AAD the way
Cloud KMS does, keeps key versions with states, and can refuse, fail or corrupt on demand."""

from __future__ import annotations

import secrets
import struct
import threading
from concurrent import futures
from dataclasses import dataclass, field

import google_crc32c
import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import KeyManagementServiceGrpcTransport

SERVICE = "google.cloud.kms.v1.KeyManagementService"


@dataclass
class CryptoKey:
    versions: dict[int, bytes] = field(default_factory=dict)
    states: dict[int, str] = field(default_factory=dict)
    primary: int = 1
    denied: bool = False

    def add_version(self) -> int:
        number = len(self.versions) + 1
        self.versions[number] = secrets.token_bytes(32)
        self.states[number] = "ENABLED"
        self.primary = number
        return number


class FakeCloudKms:
    def __init__(self) -> None:
        self.keys: dict[str, CryptoKey] = {}
        self.requests: list[tuple[str, object]] = []
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
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    # ----------------------------------------------------------------- control

    def create_key(self, name: str) -> str:
        self.keys[name] = CryptoKey()
        self.keys[name].add_version()
        return name

    def set_state(self, name: str, version: int, state: str) -> None:
        self.keys[name].states[version] = state

    def fail_next(self, count: int, kind: str) -> None:
        with self._lock:
            self._faults.extend([kind] * count)

    def fail_always(self, kind: str | None) -> None:
        with self._lock:
            self._persistent = kind

    def client(self) -> kms_v1.KeyManagementServiceClient:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        return kms_v1.KeyManagementServiceClient(transport=KeyManagementServiceGrpcTransport(channel=channel))

    def stop(self) -> None:
        self._server.stop(0)

    def calls(self, method: str) -> list:
        return [request for name, request in self.requests if name == method]

    # ----------------------------------------------------------------- service

    def _fault(self) -> str | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else self._persistent

    def _key(self, name: str, context: grpc.ServicerContext) -> CryptoKey:
        key = self.keys.get(name)
        if key is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{name} not found")
        if key.denied:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on {name}",
            )
        return key

    @staticmethod
    def _check_crc(data: bytes, crc, what: str, context: grpc.ServicerContext) -> None:
        if crc is None or crc != google_crc32c.value(data):  # proto-plus unwraps Int64Value
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{what} checksum mismatch")

    def _encrypt(self, request: kms_v1.EncryptRequest, context: grpc.ServicerContext) -> kms_v1.EncryptResponse:
        self.requests.append(("Encrypt", request))
        fault = self._fault()
        if fault == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        key = self._key(request.name, context)
        if key.states[key.primary] != "ENABLED":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"primary version is {key.states[key.primary]}")
        self._check_crc(request.plaintext, request.plaintext_crc32c, "plaintext", context)
        self._check_crc(
            request.additional_authenticated_data, request.additional_authenticated_data_crc32c, "AAD", context
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
            name=f"{request.name}/cryptoKeyVersions/{key.primary}",
            ciphertext=ciphertext,
            ciphertext_crc32c=crc,
            verified_plaintext_crc32c=fault != "unverified",
            verified_additional_authenticated_data_crc32c=True,
        )

    def _decrypt(self, request: kms_v1.DecryptRequest, context: grpc.ServicerContext) -> kms_v1.DecryptResponse:
        self.requests.append(("Decrypt", request))
        fault = self._fault()
        if fault == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        key = self._key(request.name, context)
        self._check_crc(request.ciphertext, request.ciphertext_crc32c, "ciphertext", context)
        self._check_crc(
            request.additional_authenticated_data, request.additional_authenticated_data_crc32c, "AAD", context
        )
        (version,) = struct.unpack(">I", request.ciphertext[:4])
        if version not in key.versions:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Decryption failed")
        if key.states[version] != "ENABLED":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cryptoKeyVersions/{version} is {key.states[version]}")
        try:
            plaintext = AESGCM(key.versions[version]).decrypt(
                request.ciphertext[4:16], request.ciphertext[16:], request.additional_authenticated_data
            )
        except InvalidTag:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Decryption failed: verify that 'name' refers to the "
                "correct CryptoKey and that the additional authenticated data matches",
            )
        crc = google_crc32c.value(plaintext)
        if fault == "plaintext_crc":
            crc ^= 1
        if fault == "flip_plaintext":
            plaintext = bytes([plaintext[0] ^ 1]) + plaintext[1:]
        return kms_v1.DecryptResponse(plaintext=plaintext, plaintext_crc32c=crc, used_primary=version == key.primary)
