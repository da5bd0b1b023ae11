"""Records are sealed with AAD binding tenant, record name and version."""

from __future__ import annotations

import secrets

import pytest

from tenant_kms.sealing import RecordIntegrityError, open_record, seal_record

TMK = secrets.token_bytes(32)


def test_round_trip():
    blob = seal_record(TMK, "acme", "db-password", 2, b"hunter2")
    assert b"hunter2" not in blob
    assert open_record(TMK, "acme", "db-password", 2, blob) == b"hunter2"


@pytest.mark.parametrize(
    ("tenant", "name", "version", "key"),
    [
        ("other", "db-password", 2, TMK),
        ("acme", "other", 2, TMK),
        ("acme", "db-password", 3, TMK),
        ("acme", "db-password", 2, secrets.token_bytes(32)),
    ],
    # Stable ids, not the random key's bytes: the mutation run selects tests by id.
    ids=["other-tenant", "other-name", "other-version", "other-key"],
)
def test_moved_or_wrong_key_fails(tenant, name, version, key):
    blob = seal_record(TMK, "acme", "db-password", 2, b"hunter2")
    with pytest.raises(RecordIntegrityError, match="failed authentication"):
        open_record(key, tenant, name, version, blob)


def test_tampered_or_truncated_fails():
    blob = seal_record(TMK, "acme", "n", 1, b"v")
    for bad in (blob[:-1] + bytes([blob[-1] ^ 1]), blob[:10], b"\x02" + blob[1:]):
        with pytest.raises(RecordIntegrityError):
            open_record(TMK, "acme", "n", 1, bad)
