"""The session cache never serves a key past its TTL, counted from the unwrap (rule 5)."""

from __future__ import annotations

from support import Clock

from tenant_kms.keyring import SessionCache


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
    cache = SessionCache(Clock(), max_entries=2)
    cache.put(("a", 1, "u"), b"a" * 32, 60)
    cache.put(("b", 1, "u"), b"b" * 32, 60)
    assert cache.get(("a", 1, "u"))
    cache.put(("c", 1, "u"), b"c" * 32, 60)
    assert cache.get(("b", 1, "u")) is None and cache.get(("a", 1, "u")) and len(cache) == 2
    assert "a" * 32 not in repr(cache.get(("a", 1, "u")))


def test_an_entry_put_again_is_the_most_recently_used():
    """Catches put() leaving a refreshed key at its old place in the LRU order: it would be
    the next one dropped although it was just unwrapped again."""
    cache = SessionCache(Clock(), max_entries=2)
    cache.put(("a", 1, "u"), b"a" * 32, 60)
    cache.put(("b", 1, "u"), b"b" * 32, 60)
    cache.put(("a", 1, "u"), b"a" * 32, 60)
    cache.put(("c", 1, "u"), b"c" * 32, 60)
    assert cache.get(("a", 1, "u")) and cache.get(("b", 1, "u")) is None
