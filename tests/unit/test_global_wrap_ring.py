"""The global adapter's master key ring: wrap under the current key, unwrap under any ring key,
and load the ring afresh once before refusing a key id this instance does not know."""

from __future__ import annotations

import secrets

import pytest

from kms_wrapping import KeyAccessRefused, ProviderUnavailable, WrapContext
from kms_wrapping.global_wrap import GlobalKeyWrapper, master_key_id
from tenant_kms.settings import ConfigurationError, Settings, decode_master_keys

K1, K2, K3 = (secrets.token_bytes(32) for _ in range(3))
CONTEXT = WrapContext("acme", 1)


class Source:
    """A master key source whose cached copy lags behind the secret until forced."""

    def __init__(self, keys: list[bytes]) -> None:
        self.secret, self.cached, self.forced = keys, keys, 0

    def __call__(self, force: bool) -> list[bytes]:
        if force:
            self.forced += 1
            self.cached = self.secret
        return self.cached


def test_wraps_under_the_current_key_and_unwraps_under_any_ring_key():
    old = GlobalKeyWrapper(master_key=K1).wrap(secrets.token_bytes(32), CONTEXT)
    ring = GlobalKeyWrapper(master_keys=lambda _force: [K2, K1])
    new = ring.wrap(tmk := secrets.token_bytes(32), CONTEXT)
    assert new.key_id == master_key_id(K2) == ring.current_key_id("acme")
    assert ring.unwrap(new, CONTEXT) == tmk
    assert len(ring.unwrap(old, CONTEXT)) == 32
    with pytest.raises(KeyAccessRefused, match="wrapped under master key"):
        GlobalKeyWrapper(master_key=K2).unwrap(old, CONTEXT)


def test_an_instance_behind_a_rotation_loads_the_ring_afresh_once_before_refusing():
    # Given an instance whose copy still says K1 while the secret already holds K2, K1
    source = Source([K1])
    behind = GlobalKeyWrapper(master_keys=source)
    behind.wrap(secrets.token_bytes(32), CONTEXT)
    source.secret = [K2, K1]
    wrapped = GlobalKeyWrapper(master_keys=lambda _force: [K2, K1]).wrap(tmk := secrets.token_bytes(32), CONTEXT)

    # Then it unwraps what a newer instance wrapped, after one forced load, and wraps under K2 from now on
    assert behind.unwrap(wrapped, CONTEXT) == tmk and source.forced == 1
    assert behind.wrap(secrets.token_bytes(32), CONTEXT).key_id == master_key_id(K2)

    # And a key id the secret does not hold either is refused after one forced load
    stranger = GlobalKeyWrapper(master_key=K3).wrap(secrets.token_bytes(32), CONTEXT)
    with pytest.raises(KeyAccessRefused):
        behind.unwrap(stranger, CONTEXT)
    assert source.forced == 2


def test_a_source_that_cannot_answer_is_an_outage_not_a_refusal():
    def unreachable(_force: bool) -> list[bytes]:
        raise ProviderUnavailable("the master key secret could not be read")

    wrapped = GlobalKeyWrapper(master_key=K1).wrap(secrets.token_bytes(32), CONTEXT)
    with pytest.raises(ProviderUnavailable):
        GlobalKeyWrapper(master_keys=unreachable).unwrap(wrapped, CONTEXT)


def test_repr_names_key_ids_only():
    wrapper = GlobalKeyWrapper(master_keys=lambda _force: [K2, K1])
    wrapper.wrap(secrets.token_bytes(32), CONTEXT)
    text = repr(wrapper)
    assert master_key_id(K2) in text and master_key_id(K1) in text
    assert K1.hex() not in text and K2.hex() not in text


def b64(key: bytes) -> str:
    import base64

    return base64.b64encode(key).decode()


def test_master_key_b64_takes_one_key_or_a_comma_separated_ring():
    assert decode_master_keys(f"{b64(K2)}, {b64(K1)}", "MASTER_KEY_B64") == [K2, K1]
    assert decode_master_keys(b64(K1), "MASTER_KEY_B64") == [K1]
    env = {"CONFIG_TABLE": "c", "KEY_VERSION_TABLE": "k", "TENANT_DATA_TABLE": "d"}
    assert Settings.from_env({**env, "MASTER_KEY_B64": f"{b64(K2)},{b64(K1)}"})
    for bad, message in [
        (f"{b64(K2)},", "empty entry"),
        (f"{b64(K2)},{b64(K1)[:-4]}", r"\(key 2\) must decode to 32 bytes"),
        (f"{b64(K2)},not base64!", r"\(key 2\) is not valid base64"),
    ]:
        with pytest.raises(ConfigurationError, match=message) as error:
            Settings.from_env({**env, "MASTER_KEY_B64": bad})
        assert b64(K2) not in str(error.value)


def test_repr_says_which_key_is_current_and_works_before_the_ring_is_loaded():
    """Catches a repr that drops the current key id, or that fails on a wrapper whose source
    was not asked yet (a log line of a cold instance would raise)."""
    wrapper = GlobalKeyWrapper(master_keys=lambda _force: [K2, K1])
    assert repr(wrapper) == "GlobalKeyWrapper(current=None, ring=())"
    wrapper.wrap(secrets.token_bytes(32), CONTEXT)
    assert repr(wrapper) == (
        f"GlobalKeyWrapper(current={master_key_id(K2)!r}, ring={(master_key_id(K2), master_key_id(K1))!r})"
    )


def test_a_key_the_ring_holds_unwraps_without_asking_the_source_past_its_cache():
    """Catches an unwrap that looks the key id up wrongly and only finds it through the forced
    reload: every unwrap would then read the secret past its cache."""
    source = Source([K2, K1])
    wrapper = GlobalKeyWrapper(master_keys=source)
    for key in (K1, K2):
        wrapped = GlobalKeyWrapper(master_key=key).wrap(tmk := secrets.token_bytes(32), CONTEXT)
        assert wrapper.unwrap(wrapped, CONTEXT) == tmk
    assert source.forced == 0


def test_refresh_reads_the_secret_past_its_cache_and_wraps_under_the_new_current_key():
    """The scheduled rewrap refreshes the ring before it re-wraps old versions. Catches a
    refresh that reads only the source's cached copy: it would keep wrapping under the key
    the rotation retired."""
    source = Source([K1])
    wrapper = GlobalKeyWrapper(master_keys=source)
    assert wrapper.current_key_id("acme") == master_key_id(K1)
    source.secret = [K2, K1]  # rotated; the source's cache still holds the old ring
    wrapper.refresh()
    assert source.forced == 1
    assert wrapper.wrap(secrets.token_bytes(32), CONTEXT).key_id == master_key_id(K2)
