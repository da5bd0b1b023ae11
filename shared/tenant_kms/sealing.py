"""AES-256-GCM sealing of tenant data records under a tenant master key.

The AAD binds tenant id, record name and key version, so a ciphertext copied to another
tenant, record or version fails to open.
"""

from __future__ import annotations

import functools
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
    cipher holds about 3 KB of OpenSSL state, and the unwrap function never seals."""

    __slots__ = ("_aead", "_tmk")

    def __init__(self, tmk: bytes) -> None:
        self._tmk = tmk
        self._aead: AESGCM | None = None

    @property
    def aead(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(self._tmk)  # two threads racing build equal ciphers
        return self._aead

    def __repr__(self) -> str:
        return "RecordKey(<redacted>)"


@functools.lru_cache(maxsize=4096)  # a record is sealed and opened under the same binding again and again
def record_aad(tenant_id: str, name: str, version: int) -> bytes:
    # The bytes json.dumps(sort_keys=True, separators=(",", ":")) gives for
    # {"purpose": "tenant-record", "tenant_id", "name", "version"}, written out: stored
    # records bind exactly these bytes, and this is several times cheaper.
    return (
        f'{{"name":{_json_string(name)},"purpose":"tenant-record",'
        f'"tenant_id":{_json_string(tenant_id)},"version":{int(version)}}}'
    ).encode()


def seal_record(key: RecordKey | bytes, tenant_id: str, name: str, version: int, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)  # what secrets.token_bytes returns, one call fewer
    aead = key.aead if type(key) is RecordKey else AESGCM(key)
    return FORMAT + nonce + aead.encrypt(nonce, plaintext, record_aad(tenant_id, name, version))


def open_record(key: RecordKey | bytes, tenant_id: str, name: str, version: int, blob: bytes) -> bytes:
    if blob[:1] != FORMAT or len(blob) < _MIN_BLOB:
        raise RecordIntegrityError(f'record "{name}" is not in a known format')
    nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        aead = key.aead if type(key) is RecordKey else AESGCM(key)
        return aead.decrypt(nonce, sealed, record_aad(tenant_id, name, version))
    except InvalidTag:
        raise RecordIntegrityError(f'record "{name}" failed authentication') from None
