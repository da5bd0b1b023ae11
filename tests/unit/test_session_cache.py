"""The session cache never serves a key past its TTL, counted from the unwrap (docs/LIFECYCLE.md rule 5)."""

from __future__ import annotations

import base64

from support import Clock

from tenant_kms.keyring import ENTRY_BYTES, SessionCache
from tenant_kms.service import TenantKms
from tenant_kms.settings import Settings


def test_ttl_counts_from_the_unwrap_not_from_last_use():
    clock = Clock()
    cache = SessionCache(clock)
    cache.put(("acme", 1, "uid"), b"k" * 32, 300)
    assert cache.get(("acme", 1, "uid")).tmk == b"k" * 32
    for _ in range(299):
        clock.now += 1
        assert cache.get(("acme", 1, "uid")) is not None  # used every second
    clock.now += 1
    assert cache.get(("acme", 1, "uid")) is None  # 300 s after the unwrap: gone


def test_a_new_cache_answers_a_miss():
    """Catches a lookup in an empty cache failing instead of answering a miss (the first
    unwrap of every function instance)."""
    assert SessionCache(Clock()).get(("acme", 1, "uid")) is None


def test_entries_are_per_key_uid_and_evictable():
    cache = SessionCache(Clock())
    cache.put(("acme", 1, "old"), b"a" * 32, 60)
    assert cache.get(("acme", 1, "new")) is None
    cache.put(("acme", 2, "x"), b"b" * 32, 60)
    cache.put(("other", 1, "y"), b"c" * 32, 60)
    cache.evict("acme", 2)
    assert cache.get(("acme", 2, "x")) is None and cache.get(("acme", 1, "old")) is not None
    cache.evict("acme")
    assert cache.get(("acme", 1, "old")) is None and cache.get(("other", 1, "y")) is not None


def test_bounded_size_drops_the_least_recently_used():
    cache = SessionCache(Clock(), budget_bytes=2 * ENTRY_BYTES)
    cache.put(("a", 1, "u"), b"a" * 32, 60)
    cache.put(("b", 1, "u"), b"b" * 32, 60)
    assert cache.get(("a", 1, "u"))
    cache.put(("c", 1, "u"), b"c" * 32, 60)
    assert cache.get(("b", 1, "u")) is None and cache.get(("a", 1, "u")) and len(cache) == 2
    assert "a" * 32 not in repr(cache.get(("a", 1, "u")))


def test_an_entry_put_again_is_the_most_recently_used():
    """Catches put() leaving a refreshed key at its old place in the LRU order: it would be
    the next one dropped although it was just unwrapped again."""
    cache = SessionCache(Clock(), budget_bytes=2 * ENTRY_BYTES)
    cache.put(("a", 1, "u"), b"a" * 32, 60)
    cache.put(("b", 1, "u"), b"b" * 32, 60)
    cache.put(("a", 1, "u"), b"a" * 32, 60)
    cache.put(("c", 1, "u"), b"c" * 32, 60)
    assert cache.get(("a", 1, "u")) and cache.get(("b", 1, "u")) is None


def test_the_budget_in_bytes_sets_how_many_keys_stay():
    """Catches the size being a fixed count again, or a budget that rounds to no entry."""
    assert SessionCache(Clock(), budget_bytes=10 * ENTRY_BYTES + ENTRY_BYTES - 1).max_entries == 10
    assert SessionCache(Clock(), budget_bytes=1).max_entries == 1
    assert SessionCache(Clock()).max_entries * ENTRY_BYTES <= 64 * 1024 * 1024


def test_evicting_a_tenant_takes_all_its_versions_and_nothing_else():
    """Catches the tenant index missing a key (evict would leave a sealed or erased tenant's
    key in the cache), or keeping one after the LRU, an expiry or a version evict dropped it."""
    clock = Clock()
    cache = SessionCache(clock, budget_bytes=4 * ENTRY_BYTES)
    for version in (1, 2, 3):
        cache.put(("acme", version, f"u{version}"), b"a" * 32, 60)
    cache.put(("other", 1, "u"), b"o" * 32, 60)
    cache.put(("acme", 2, "u2"), b"a" * 32, 60)  # put again: one key, still one index entry
    cache.evict("acme", 1)
    assert cache.get(("acme", 1, "u1")) is None and len(cache) == 3
    cache.put(("third", 1, "u"), b"t" * 32, 60)
    cache.put(("fourth", 1, "u"), b"f" * 32, 60)  # over the budget: acme 3 (least recent) goes
    assert cache.get(("acme", 3, "u3")) is None
    cache.evict("acme")
    assert cache.get(("acme", 2, "u2")) is None
    assert all(cache.get(key) for key in [("other", 1, "u"), ("third", 1, "u"), ("fourth", 1, "u")])
    cache.evict("acme")  # nothing left of it: a no-op
    cache.evict("nobody", 3)
    assert len(cache) == 3 and cache._by_tenant.keys() == {"other", "third", "fourth"}


def test_expired_keys_are_dropped_as_the_clock_passes_them():
    """Catches an expired key staying in memory until it falls off the LRU end, and a key put
    again being dropped at its first expiry instead of its second."""
    clock = Clock()
    cache = SessionCache(clock)
    cache.put(("byok", 1, "u"), b"b" * 32, 300)
    cache.put(("global", 1, "u"), b"g" * 32, 3600)
    cache.put(("again", 1, "u"), b"a" * 32, 300)
    clock.now += 200
    cache.put(("again", 1, "u"), b"a" * 32, 300)  # unwrapped again: expires at 500
    clock.now += 100
    assert cache.get(("global", 1, "u")) is not None  # any operation drops what expired
    assert len(cache) == 2 and cache.get(("again", 1, "u")) is not None
    clock.now += 200
    cache.put(("new", 1, "u"), b"n" * 32, 60)
    assert len(cache) == 2 and cache.get(("again", 1, "u")) is None
    assert cache._by_tenant.keys() == {"global", "new"}


def test_the_expiry_heap_stays_bounded_by_the_keys_held():
    """Catches the expiry heap growing with every put of the same keys (a slow leak), or
    rebuilt before its stale items pass twice the keys held plus 64 (a rebuild costs a pass
    over every key: done on every put, a put would cost the whole cache)."""
    cache = SessionCache(Clock(), budget_bytes=10 * ENTRY_BYTES)
    held = []
    for round_ in range(1000):
        cache.put(("acme", round_ % 5, "u"), b"a" * 32, 60)
        held.append(len(cache._expiry))
    assert len(cache) == 5 and max(held) == 2 * 5 + 64


def test_the_deployment_setting_sizes_each_instances_cache():
    """Catches SESSION_CACHE_MB (SessionCacheMb) not reaching the cache: the README's settings
    table says the cache takes that much memory, counted per key, and no more."""
    env = {
        "CONFIG_TABLE": "c",
        "KEY_VERSION_TABLE": "k",
        "TENANT_DATA_TABLE": "d",
        "AWS_REGION": "eu-west-1",
        "MASTER_KEY_B64": base64.b64encode(b"k" * 32).decode(),
    }
    assert TenantKms(Settings.from_env(env)).cache.max_entries == 64 * 1024 * 1024 // ENTRY_BYTES  # ~18,700
    small = TenantKms(Settings.from_env({**env, "SESSION_CACHE_MB": "1"}))
    assert small.cache.max_entries == 1024 * 1024 // ENTRY_BYTES
