"""The ``global`` provider: AES-256-GCM key wrap under the deployment's master key ring.

The ring is the current master key first, then keys still accepted during a rotation. New
wraps use the current key; an unwrap uses whichever ring key the wrapped key's id names.
An id this instance does not know may come from an instance that saw the rotation first,
so the ring is loaded afresh once before the unwrap is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms_wrapping.base import KeyAccessRefused, KeyWrapper, WrapContext, WrappedKey

NONCE_BYTES = 12
BLOB_FORMAT = b"\x01"

# force -> the master keys, current first; force asks the source again, past any cache.
MasterKeySource = Callable[[bool], Sequence[bytes]]


def master_key_id(master_key: bytes) -> str:
    """A one-way fingerprint naming the master key, so a version records which one wrapped it."""
    digest = hmac.new(master_key, b"tenant-kms/master-key-id", hashlib.sha256).hexdigest()
    return f"global:{digest[:16]}"


class MasterKeyRing:
    """The master keys by id, current first."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("the master key ring is empty")
        if any(len(key) != 32 for key in keys):
            raise ValueError("every master key must be 32 bytes")
        self.source = tuple(keys)
        self._aeads = {master_key_id(key): AESGCM(key) for key in keys}
        self.current_id = master_key_id(keys[0])

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._aeads)

    def aead(self, key_id: str) -> AESGCM | None:
        return self._aeads.get(key_id)


class GlobalKeyWrapper(KeyWrapper):
    provider = "global"

    def __init__(self, *, master_key: bytes | None = None, master_keys: MasterKeySource | None = None) -> None:
        """One fixed ``master_key``, or a ``master_keys`` source asked on every use (it caches)."""
        self._ring: MasterKeyRing | None = None
        if master_keys is None:
            if master_key is None:
                raise ValueError("a master key or a source of master keys is required")
            self._ring = MasterKeyRing([master_key])
            fixed = self._ring.source
            master_keys = lambda _force: fixed  # noqa: E731
        self._source = master_keys
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        ring = self._ring
        return f"GlobalKeyWrapper(current={ring.current_id if ring else None!r}, ring={ring.ids if ring else ()!r})"

    def ring(self, *, force: bool = False) -> MasterKeyRing:
        """The ring as the source has it now; ``force``: past the source's cache."""
        keys = tuple(self._source(force))
        with self._lock:
            if self._ring is None or self._ring.source != keys:
                self._ring = MasterKeyRing(keys)
            return self._ring

    def refresh(self) -> None:
        self.ring(force=True)

    def current_key_id(self, tenant_id: str) -> str:
        return self.ring().current_id

    def _wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey:
        ring = self.ring()
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = ring.aead(ring.current_id).encrypt(nonce, plaintext, context.aad())
        return WrappedKey(key_id=ring.current_id, ciphertext=BLOB_FORMAT + nonce + sealed)

    def _unwrap(self, wrapped: WrappedKey, context: WrapContext) -> bytes:
        ring = self.ring()
        aead = ring.aead(wrapped.key_id)
        if aead is None:
            # Wrapped by an instance that saw a rotation this one has not seen yet.
            ring = self.ring(force=True)
            aead = ring.aead(wrapped.key_id)
        if aead is None:
            raise KeyAccessRefused(f"wrapped under master key {wrapped.key_id}, deployment has {', '.join(ring.ids)}")
        blob = wrapped.ciphertext
        if blob[:1] != BLOB_FORMAT or len(blob) < 1 + NONCE_BYTES + 16:
            raise KeyAccessRefused("wrapped key is not in the global wrap format")
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return aead.decrypt(nonce, sealed, context.aad())
        except InvalidTag:
            raise KeyAccessRefused("wrapped key failed authentication for this tenant and version") from None
