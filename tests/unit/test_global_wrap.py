"""The global adapter: AES-256-GCM key wrap bound to tenant and version."""

from __future__ import annotations

import base64
import secrets

import pytest

from kms_wrapping import KeyAccessRefused, WrapContext, WrappedKey
from kms_wrapping.global_wrap import GlobalKeyWrapper, master_key_id

MASTER = secrets.token_bytes(32)


def test_round_trip_records_the_resolved_master_key():
    wrapper = GlobalKeyWrapper(master_key=MASTER)
    tmk = secrets.token_bytes(32)
    wrapped = wrapper.wrap(tmk, WrapContext("acme", 3))
    assert wrapped.key_id == master_key_id(MASTER) and tmk not in wrapped.ciphertext
    assert wrapper.unwrap(wrapped, WrapContext("acme", 3)) == tmk


@pytest.mark.parametrize(
    "elsewhere",
    [WrapContext("other", 3), WrapContext("acme", 4), WrapContext("acme", 3, purpose="probe")],
)
def test_wrapped_key_moved_elsewhere_fails(elsewhere):
    wrapper = GlobalKeyWrapper(master_key=MASTER)
    wrapped = wrapper.wrap(secrets.token_bytes(32), WrapContext("acme", 3))
    with pytest.raises(KeyAccessRefused):
        wrapper.unwrap(wrapped, elsewhere)


def test_another_master_key_is_refused_by_name_and_by_tag():
    wrapped = GlobalKeyWrapper(master_key=MASTER).wrap(secrets.token_bytes(32), WrapContext("acme", 1))
    other = GlobalKeyWrapper(master_key=secrets.token_bytes(32))
    with pytest.raises(KeyAccessRefused, match="wrapped under master key"):
        other.unwrap(wrapped, WrapContext("acme", 1))
    relabelled = WrappedKey(key_id=master_key_id(MASTER), ciphertext=wrapped.ciphertext)
    with pytest.raises(KeyAccessRefused):
        GlobalKeyWrapper(master_key=MASTER).unwrap(
            WrappedKey(relabelled.key_id, relabelled.ciphertext[:-1] + bytes([relabelled.ciphertext[-1] ^ 1])),
            WrapContext("acme", 1),
        )


def shown_forms(secret: bytes) -> list[str]:
    """How bytes show up in text: their repr (whole, or its inside), hex, base64."""
    return [repr(secret), repr(secret)[2:-1], secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode()]


def test_repr_and_probe_never_show_key_material():
    """Catches a repr that prints the master key ring, the TMK or the wrapped blob in any
    form, raw bytes repr included (a bytes repr is not hex: a hex-only scan misses it)."""
    wrapper = GlobalKeyWrapper(master_key=MASTER)
    tmk = secrets.token_bytes(32)
    wrapped = wrapper.wrap(tmk, WrapContext("acme", 1))
    shown = " ".join(
        [repr(wrapper), str(wrapper), repr(wrapper.ring()), repr(wrapped), str(wrapped), wrapper.probe("acme")]
    )
    for secret in (MASTER, tmk, wrapped.ciphertext):
        for form in shown_forms(secret):
            assert form not in shown, "key material shown"
    assert wrapper.probe("acme") == master_key_id(MASTER)


def test_only_32_byte_keys_are_wrapped():
    with pytest.raises(ValueError):
        GlobalKeyWrapper(master_key=MASTER).wrap(b"short", WrapContext("acme", 1))
