"""AES-256-GCM sealing of tenant data records under a tenant master key.

The AAD binds tenant id, record name and key version, so a ciphertext copied to another
tenant, record or version fails to open.
"""

from __future__ import annotations

import json
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenant_kms.errors import TenantKmsError

FORMAT = b"\x01"
NONCE_BYTES = 12


class RecordIntegrityError(TenantKmsError):
    code, status = "integrity_error", 500


def record_aad(tenant_id: str, name: str, version: int) -> bytes:
    binding = {"purpose": "tenant-record", "tenant_id": tenant_id, "name": name, "version": version}
    return json.dumps(binding, sort_keys=True, separators=(",", ":")).encode()


def seal_record(tmk: bytes, tenant_id: str, name: str, version: int, plaintext: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return FORMAT + nonce + AESGCM(tmk).encrypt(nonce, plaintext, record_aad(tenant_id, name, version))


def open_record(tmk: bytes, tenant_id: str, name: str, version: int, blob: bytes) -> bytes:
    if blob[:1] != FORMAT or len(blob) < 1 + NONCE_BYTES + 16:
        raise RecordIntegrityError(f'record "{name}" is not in a known format')
    nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return AESGCM(tmk).decrypt(nonce, sealed, record_aad(tenant_id, name, version))
    except InvalidTag:
        raise RecordIntegrityError(f'record "{name}" failed authentication') from None
