"""The session cache of unwrapped tenant master keys (DESIGN rule 5).

A key is cached per function instance for its session TTL, counted from the unwrap, not
from last use, and is never served past it. Entries are keyed by the version's random
``key_uid`` so a re-created tenant or version never hits an old entry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from tenant_kms.sealing import RecordKey

Clock = Callable[[], float]
CacheKey = tuple[str, int, str]


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
    def __init__(self, clock: Clock, max_entries: int = 10_000) -> None:
        self.clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[CacheKey, SessionKey] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> SessionKey | None:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry.expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: CacheKey, tmk: bytes, ttl_seconds: int) -> SessionKey:
        entry = SessionKey(tmk=tmk, expires_at=self.clock() + ttl_seconds)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return entry

    def evict(self, tenant_id: str, version: int | None = None) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == tenant_id and (version is None or k[1] == version)]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
