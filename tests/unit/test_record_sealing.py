"""Records are sealed with AAD binding tenant, record name and version."""

from __future__ import annotations

import json
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_kms.keyring import SessionKey
from tenant_kms.sealing import RecordIntegrityError, RecordKey, open_record, record_aad, seal_record

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


@pytest.mark.parametrize(
    ("tenant", "name", "version"),
    [("other", "db-password", 2), ("acme", "other", 2), ("acme", "db-password", 3)],
    ids=["other-tenant", "other-name", "other-version"],
)
def test_a_record_moved_fails_under_the_key_object_that_sealed_it(tenant, name, version):
    """Catches the AAD tail a key object keeps being reused for another tenant or version."""
    key = RecordKey(TMK)
    blob = seal_record(key, "acme", "db-password", 2, b"hunter2")
    with pytest.raises(RecordIntegrityError, match="failed authentication"):
        open_record(key, tenant, name, version, blob)
    assert open_record(key, "acme", "db-password", 2, blob) == b"hunter2"


@given(bindings=st.lists(st.tuples(st.text(), st.text(), st.integers(min_value=0, max_value=2**63)), min_size=1))
def test_a_key_object_binds_what_record_aad_binds_whatever_it_bound_before(bindings):
    key = RecordKey(TMK)
    for tenant, name, version in bindings:
        assert key.aad(tenant, name, version) == record_aad(tenant, name, version)


def test_tampered_or_truncated_fails():
    blob = seal_record(TMK, "acme", "n", 1, b"v")
    for bad in (blob[:-1] + bytes([blob[-1] ^ 1]), blob[:10], b"\x02" + blob[1:]):
        with pytest.raises(RecordIntegrityError):
            open_record(TMK, "acme", "n", 1, bad)


@given(tenant=st.text(), name=st.text(), version=st.integers(min_value=0, max_value=2**63))
def test_the_aad_is_the_sorted_compact_json_of_the_binding(tenant, name, version):
    """Catches the written-out AAD drifting from the JSON records were sealed under: any
    character json escapes differently (quotes, controls, non-ASCII, surrogates) would bind
    other bytes and stored records would stop opening."""
    binding = {"purpose": "tenant-record", "tenant_id": tenant, "name": name, "version": version}
    assert record_aad(tenant, name, version) == json.dumps(binding, sort_keys=True, separators=(",", ":")).encode()


def test_a_session_key_seals_like_its_bytes_and_never_shows_them():
    """Catches the cached cipher of a session key sealing under another key, or its repr
    carrying the key."""
    session = SessionKey(tmk=TMK, expires_at=0.0)
    blob = seal_record(session.record_key, "acme", "n", 1, b"v")
    assert open_record(TMK, "acme", "n", 1, blob) == b"v"
    assert open_record(session.record_key, "acme", "n", 1, seal_record(TMK, "acme", "n", 1, b"v")) == b"v"
    for shown in (repr(session), repr(session.record_key), str(session.record_key)):
        assert TMK.hex() not in shown and repr(TMK) not in shown
    assert repr(session.record_key) == "RecordKey(<redacted>)"  # what a log or traceback shows
