"""The session cache of unwrapped tenant master keys (docs/LIFECYCLE.md rule 5).

A key is cached per function instance for its session TTL, counted from the unwrap, not
from last use, and is never served past it. Entries are keyed by the version's random
``key_uid`` so a re-created tenant or version never hits an old entry.

The cache is sized in bytes, not entries: ``ENTRY_BYTES`` is what one entry costs in
memory (measured by bench/session_cache.py), and the least recently used keys go once the
budget is full. Entries are indexed by tenant, so sealing, destroying or erasing one tenant
evicts its keys without looking at anyone else's, and expired keys are dropped as the
clock passes them rather than lingering until they fall off the LRU end.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from tenant_kms.sealing import RecordKey

Clock = Callable[[], float]
CacheKey = tuple[str, int, str]

# Memory of one entry, as the process's resident size grows (bench/session_cache.py): about
# 1 KB for the key, its ids and its places in the LRU, tenant index and expiry heap, and
# 2.4 KB more once its cipher is built (the data function builds it, unwrap never does).
# Counted at the larger, so the budget holds whichever function the cache runs in.
ENTRY_BYTES = 3584
DEFAULT_BUDGET_MB = 64


@dataclass(frozen=True)
class SessionKey:
    tmk: bytes
    expires_at: float
    record_key: RecordKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "record_key", RecordKey(self.tmk))

    def __repr__(self) -> str:
        return f"SessionKey(expires_at={self.expires_at})"


class SessionCache:
    def __init__(self, clock: Clock, budget_bytes: int = DEFAULT_BUDGET_MB * 1024 * 1024) -> None:
        self.clock = clock
        self.max_entries = max(1, budget_bytes // ENTRY_BYTES)
        self._entries: OrderedDict[CacheKey, SessionKey] = OrderedDict()
        self._by_tenant: dict[str, set[CacheKey]] = {}
        # (expires_at, order, key, entry): an item whose entry was replaced or evicted is stale
        # and skipped when it comes up; the heap is rebuilt when stale items outnumber live ones.
        self._expiry: list[tuple[float, int, CacheKey, SessionKey]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> SessionKey | None:
        now = self.clock()
        with self._lock:
            if self._expiry and self._expiry[0][0] <= now:
                self._drop_expired(now)
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry.expires_at:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: CacheKey, tmk: bytes, ttl_seconds: int) -> SessionKey:
        now = self.clock()
        entry = SessionKey(tmk=tmk, expires_at=now + ttl_seconds)
        with self._lock:
            self._drop_expired(now)
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._by_tenant.setdefault(key[0], set()).add(key)
            heapq.heappush(self._expiry, (entry.expires_at, next(self._order), key, entry))
            while len(self._entries) > self.max_entries:
                self._drop(next(iter(self._entries)))
            if len(self._expiry) > 2 * len(self._entries) + 64:
                self._expiry = [(e.expires_at, next(self._order), k, e) for k, e in self._entries.items()]
                heapq.heapify(self._expiry)
        return entry

    def evict(self, tenant_id: str, version: int | None = None) -> None:
        with self._lock:
            for key in list(self._by_tenant.get(tenant_id, ())):
                if version is None or key[1] == version:
                    self._drop(key)

    def _drop(self, key: CacheKey) -> None:
        del self._entries[key]
        keys = self._by_tenant[key[0]]
        keys.discard(key)
        if not keys:
            del self._by_tenant[key[0]]

    def _drop_expired(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, _, key, entry = heapq.heappop(self._expiry)
            if self._entries.get(key) is entry:
                self._drop(key)

    def __len__(self) -> int:
        return len(self._entries)
