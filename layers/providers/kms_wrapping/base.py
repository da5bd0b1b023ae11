"""The wrapping interface every provider adapter implements.

Checks and the probe live here; an adapter only supplies ``_wrap`` and ``_unwrap``
and normalises its SDK's errors into the three exception types below.
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

TMK_BYTES = 32


class WrapperError(Exception):
    """Base of every error an adapter raises. Messages never carry key material."""


class KeyAccessRefused(WrapperError):
    """The provider refused the key operation: revoked grant, disabled or missing key.

    On an unwrap this seals the tenant.
    """


class ProviderUnavailable(WrapperError):
    """A transient fault that persisted through the retries (throttling, 5xx, timeout)."""


class ProviderConfigInvalid(WrapperError):
    """The provider config cannot be used to build an adapter."""


@dataclass(frozen=True)
class WrapContext:
    """What a wrap is bound to: a wrapped key moved to another tenant or version fails."""

    tenant_id: str
    version: int
    purpose: str = "tenant-master-key"

    def as_encryption_context(self) -> dict[str, str]:
        return {"tenant_id": self.tenant_id, "tmk_version": str(self.version), "purpose": self.purpose}

    def aad(self) -> bytes:
        # Canonical JSON so every adapter and every release binds the same bytes.
        return json.dumps(self.as_encryption_context(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class WrappedKey:
    """A wrapped key and the resolved id of the key that wrapped it."""

    key_id: str
    ciphertext: bytes = b""

    def __repr__(self) -> str:
        return f"WrappedKey(key_id={self.key_id!r}, ciphertext=<{len(self.ciphertext)} bytes>)"


class KeyWrapper(ABC):
    """Wraps tenant master keys under one provider key."""

    provider: ClassVar[str]

    def wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey:
        if len(plaintext) != TMK_BYTES:
            raise ValueError("a tenant master key is 32 bytes")
        return self._wrap(plaintext, context)

    def unwrap(self, wrapped: WrappedKey, context: WrapContext) -> bytes:
        plaintext = self._unwrap(wrapped, context)
        if len(plaintext) != TMK_BYTES:
            raise KeyAccessRefused("the provider returned a key of the wrong length")
        return plaintext

    def probe(self, tenant_id: str) -> str:
        """Round-trip a random key through the provider; returns the resolved key id."""
        context = WrapContext(tenant_id=tenant_id, version=0, purpose="probe")
        sample = secrets.token_bytes(TMK_BYTES)
        wrapped = self.wrap(sample, context)
        if not secrets.compare_digest(self.unwrap(wrapped, context), sample):
            raise KeyAccessRefused("probe round trip returned a different key")
        return wrapped.key_id

    def current_key_id(self, tenant_id: str) -> str:
        """The resolved id a wrap made now would record: a version recording another one is
        held under a key that is no longer current. Adapters that know it without a call say so."""
        context = WrapContext(tenant_id=tenant_id, version=0, purpose="current-key-id")
        return self.wrap(secrets.token_bytes(TMK_BYTES), context).key_id

    @abstractmethod
    def _wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey: ...

    @abstractmethod
    def _unwrap(self, wrapped: WrappedKey, context: WrapContext) -> bytes: ...
