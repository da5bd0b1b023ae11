"""The ``global`` provider: AES-256-GCM key wrap under the deployment's master key."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms_wrapping.base import KeyAccessRefused, KeyWrapper, WrapContext, WrappedKey

NONCE_BYTES = 12
BLOB_FORMAT = b"\x01"


def master_key_id(master_key: bytes) -> str:
    """A one-way fingerprint naming the master key, so a version records which one wrapped it."""
    digest = hmac.new(master_key, b"tenant-kms/master-key-id", hashlib.sha256).hexdigest()
    return f"global:{digest[:16]}"


class GlobalKeyWrapper(KeyWrapper):
    provider = "global"

    def __init__(self, *, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(master_key)
        self._key_id = master_key_id(master_key)

    def __repr__(self) -> str:
        return f"GlobalKeyWrapper(key_id={self._key_id!r})"

    def _wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, context.aad())
        return WrappedKey(key_id=self._key_id, ciphertext=BLOB_FORMAT + nonce + sealed)

    def _unwrap(self, wrapped: WrappedKey, context: WrapContext) -> bytes:
        if wrapped.key_id != self._key_id:
            raise KeyAccessRefused(f"wrapped under master key {wrapped.key_id}, deployment has {self._key_id}")
        blob = wrapped.ciphertext
        if blob[:1] != BLOB_FORMAT or len(blob) < 1 + NONCE_BYTES + 16:
            raise KeyAccessRefused("wrapped key is not in the global wrap format")
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, context.aad())
        except InvalidTag:
            raise KeyAccessRefused("wrapped key failed authentication for this tenant and version") from None
