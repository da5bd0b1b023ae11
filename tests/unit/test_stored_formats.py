"""What is stored must still open after any release: the exact bytes a record's and a wrapped
key's authentication binds, the blob layouts and the master key id, written out here rather
than computed by the code under test (a round trip alone passes whatever the code binds, as
long as sealing and opening agree)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms_wrapping import KeyAccessRefused, WrapContext, WrappedKey
from kms_wrapping.global_wrap import GlobalKeyWrapper, master_key_id
from tenant_kms.sealing import RecordIntegrityError, open_record, seal_record

TMK = bytes(range(32))
MASTER = bytes(range(32, 64))
NONCE = bytes(range(12))
RECORD_AAD = b'{"name":"db-password","purpose":"tenant-record","tenant_id":"acme","version":2}'
WRAP_AAD = b'{"purpose":"tenant-master-key","tenant_id":"acme","tmk_version":"3"}'


def test_a_record_sealed_by_an_earlier_release_opens():
    """Catches any change to the record AAD (its keys, values, order or separators), to the
    format byte or to where the nonce sits: records already stored would no longer open."""
    stored = b"\x01" + NONCE + AESGCM(TMK).encrypt(NONCE, b"hunter2", RECORD_AAD)
    assert open_record(TMK, "acme", "db-password", 2, stored) == b"hunter2"


def test_a_record_sealed_now_opens_under_the_documented_binding():
    """Catches seal_record binding anything else than the documented AAD, or another layout."""
    blob = seal_record(TMK, "acme", "db-password", 2, b"hunter2")
    assert blob[:1] == b"\x01" and len(blob) == 1 + 12 + len(b"hunter2") + 16
    assert AESGCM(TMK).decrypt(blob[1:13], blob[13:], RECORD_AAD) == b"hunter2"


def test_an_empty_record_round_trips_and_anything_shorter_is_not_a_record():
    """Catches an off-by-one in the minimum length (format byte, nonce, tag) either way."""
    blob = seal_record(TMK, "acme", "empty", 1, b"")
    assert len(blob) == 29 and open_record(TMK, "acme", "empty", 1, blob) == b""
    with pytest.raises(RecordIntegrityError, match="not in a known format"):
        open_record(TMK, "acme", "empty", 1, blob[:-1])
    with pytest.raises(RecordIntegrityError, match="not in a known format"):
        open_record(TMK, "acme", "empty", 1, b"\x02" + blob[1:])


def test_the_master_key_id_is_a_fixed_fingerprint():
    """Catches a change to the fingerprint's label, hash or length: versions record it, and an
    unwrap looks the ring key up by it."""
    assert master_key_id(MASTER) == "global:77bf4cfbccf3cbb7"
    assert master_key_id(bytes(range(32))) == "global:c392f10a99ff0202"


def test_a_key_wrapped_by_an_earlier_release_unwraps():
    """Catches any change to the wrap AAD (the encryption context's names and values, their
    order, the separators) or to the blob layout of the global wrap."""
    tmk = bytes(range(100, 132))
    stored = WrappedKey(master_key_id(MASTER), b"\x01" + NONCE + AESGCM(MASTER).encrypt(NONCE, tmk, WRAP_AAD))
    assert GlobalKeyWrapper(master_key=MASTER).unwrap(stored, WrapContext("acme", 3)) == tmk


def test_a_key_wrapped_now_binds_the_documented_context():
    """Catches the wrap binding another AAD, or the AWS encryption context naming other fields."""
    wrapped = GlobalKeyWrapper(master_key=MASTER).wrap(TMK, WrapContext("acme", 3))
    blob = wrapped.ciphertext
    assert blob[:1] == b"\x01" and len(blob) == 1 + 12 + 32 + 16
    assert AESGCM(MASTER).decrypt(blob[1:13], blob[13:], WRAP_AAD) == TMK
    assert WrapContext("acme", 3).as_encryption_context() == {
        "tenant_id": "acme",
        "tmk_version": "3",
        "purpose": "tenant-master-key",
    }


def test_a_wrapped_key_shorter_than_nonce_and_tag_or_in_another_format_is_refused_as_such():
    """Catches an off-by-one in the global wrap's minimum length, or a format check that
    lets another first byte through to the cipher."""
    wrapper = GlobalKeyWrapper(master_key=MASTER)
    blob = wrapper.wrap(TMK, WrapContext("acme", 3)).ciphertext
    for damaged in (blob[:28], b"\x02" + blob[1:]):
        with pytest.raises(KeyAccessRefused, match="not in the global wrap format"):
            wrapper.unwrap(WrappedKey(master_key_id(MASTER), damaged), WrapContext("acme", 3))
    # Exactly format byte, nonce and tag: no room for a key, so the cipher refuses it.
    with pytest.raises(KeyAccessRefused, match="failed authentication"):
        wrapper.unwrap(WrappedKey(master_key_id(MASTER), blob[:29]), WrapContext("acme", 3))
