"""The global adapter: AES-256-GCM key wrap bound to tenant and version."""

from __future__ import annotations

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


def test_repr_and_probe_never_show_key_material():
    wrapper = GlobalKeyWrapper(master_key=MASTER)
    assert MASTER.hex() not in repr(wrapper)
    wrapped = wrapper.wrap(secrets.token_bytes(32), WrapContext("acme", 1))
    assert wrapped.ciphertext.hex() not in repr(wrapped)
    assert wrapper.probe("acme") == master_key_id(MASTER)


def test_only_32_byte_keys_are_wrapped():
    with pytest.raises(ValueError):
        GlobalKeyWrapper(master_key=MASTER).wrap(b"short", WrapContext("acme", 1))
