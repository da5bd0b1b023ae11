"""AES-256-GCM sealing of tenant data records under a tenant master key.

The AAD binds tenant id, record name and key version, so a ciphertext copied to another
tenant, record or version fails to open.
"""

from __future__ import annotations

import os
from json.encoder import encode_basestring_ascii as _json_string

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenant_kms.errors import TenantKmsError

FORMAT = b"\x01"
NONCE_BYTES = 12
_MIN_BLOB = 1 + NONCE_BYTES + 16


class RecordIntegrityError(TenantKmsError):
    code, status = "integrity_error", 500


class RecordKey:
    """A tenant master key ready to seal: its cipher is built on first use and kept, not
    built per record (that costs as much as sealing a kilobyte). Built lazily because a
    cipher holds about 3 KB of OpenSSL state, and the unwrap function never seals.

    It keeps the AAD's tail too: a key seals for one tenant and version only, so every
    record's AAD ends with the same bytes after its name."""

    __slots__ = ("_aead", "_binding", "_tmk")

    def __init__(self, tmk: bytes) -> None:
        self._tmk = tmk
        self._aead: AESGCM | None = None
        self._binding: tuple[str | None, int | None, bytes] = (None, None, b"")  # tenant, version, the AAD's tail

    @property
    def aead(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(self._tmk)  # two threads racing build equal ciphers
        return self._aead

    def aad(self, tenant_id: str, name: str, version: int) -> bytes:
        """record_aad(tenant_id, name, version), its tail built once per key."""
        binding = self._binding  # one read: another thread may replace it, never half of it
        if binding[0] != tenant_id or binding[1] != version:
            binding = self._binding = (tenant_id, version, _aad_tail(tenant_id, version))
        return b'{"name":' + _json_string(name).encode() + binding[2]

    def __repr__(self) -> str:
        return "RecordKey(<redacted>)"


def record_aad(tenant_id: str, name: str, version: int) -> bytes:
    # The bytes json.dumps(sort_keys=True, separators=(",", ":")) gives for
    # {"purpose": "tenant-record", "tenant_id", "name", "version"}, written out: stored
    # records bind exactly these bytes, and this is several times cheaper.
    return b'{"name":' + _json_string(name).encode() + _aad_tail(tenant_id, version)


def _aad_tail(tenant_id: str, version: int) -> bytes:
    return f',"purpose":"tenant-record","tenant_id":{_json_string(tenant_id)},"version":{int(version)}}}'.encode()


def seal_record(key: RecordKey | bytes, tenant_id: str, name: str, version: int, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)  # what secrets.token_bytes returns, one call fewer
    if type(key) is RecordKey:
        return FORMAT + nonce + key.aead.encrypt(nonce, plaintext, key.aad(tenant_id, name, version))
    return FORMAT + nonce + AESGCM(key).encrypt(nonce, plaintext, record_aad(tenant_id, name, version))


def open_record(key: RecordKey | bytes, tenant_id: str, name: str, version: int, blob: bytes) -> bytes:
    if blob[:1] != FORMAT or len(blob) < _MIN_BLOB:
        raise RecordIntegrityError(f'record "{name}" is not in a known format')
    nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        if type(key) is RecordKey:
            return key.aead.decrypt(nonce, sealed, key.aad(tenant_id, name, version))
        return AESGCM(key).decrypt(nonce, sealed, record_aad(tenant_id, name, version))
    except InvalidTag:
        raise RecordIntegrityError(f'record "{name}" failed authentication') from None
