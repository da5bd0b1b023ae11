"""The session cache with 50,000 (tenant, version) keys in one instance.

Printed, each measured in the same run:
- memory per entry, as the process's resident size grows: the entry alone (what the unwrap
  function holds) and with its cipher built (what the data function holds);
- a hit against a plain dict lookup of the same key;
- evicting one tenant (seal, destroy, erase) from a cache of 50,000 keys against one of
  1,000: 1.0 means the cost does not grow with the cache;
- hits after filling 50,000 keys within a budget that holds them (every one must hit).

    python bench/session_cache.py [--tenants 25000] [--versions 2]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "shared")]

from tenant_kms.keyring import ENTRY_BYTES, SessionCache  # noqa: E402


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def filled(tenants: int, versions: int, clock) -> tuple[SessionCache, list]:
    cache = SessionCache(clock, budget_bytes=(tenants * versions + 1) * ENTRY_BYTES)
    keys = [(f"tenant-{t:06d}", v, os.urandom(16).hex()) for t in range(tenants) for v in range(1, versions + 1)]
    for key in keys:
        cache.put(key, os.urandom(32), 3600)
    return cache, keys


def fastest(action, repeat: int = 7) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return min(samples)


def evict_cost(tenants: int, versions: int, clock, sample: int = 500) -> float:
    """Seconds to evict one tenant, averaged over `sample` tenants, each put back after."""
    cache, keys = filled(tenants, versions, clock)
    victims = [f"tenant-{t:06d}" for t in range(0, tenants, max(1, tenants // sample))][:sample]

    def evict_all():
        for tenant in victims:
            cache.evict(tenant)

    def put_back():
        for key in keys:
            if key[0] in chosen:
                cache.put(key, b"k" * 32, 3600)

    chosen = set(victims)
    samples = []
    for _ in range(7):
        samples.append(fastest(evict_all, repeat=1))
        put_back()
    return min(samples) / len(victims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=25_000)
    parser.add_argument("--versions", type=int, default=2)
    args = parser.parse_args()
    now = [1_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    total = args.tenants * args.versions

    gc.collect()
    before = resident_bytes()
    cache, keys = filled(args.tenants, args.versions, clock)
    entry = (resident_bytes() - before) / total
    before = resident_bytes()
    for key in keys:
        _ = cache.get(key).record_key.aead  # built on first seal or open
    cipher = (resident_bytes() - before) / total
    hits = sum(cache.get(key) is not None for key in keys)

    plain = {key: cache.get(key) for key in keys}
    probe = keys[:10_000]
    dict_time = fastest(lambda: [plain.get(key) for key in probe])
    hit_time = fastest(lambda: [cache.get(key) for key in probe])

    small = evict_cost(1_000 // args.versions, args.versions, clock)
    large = evict_cost(args.tenants, args.versions, clock)

    print(f"session cache, {total:,} (tenant, version) keys in one instance")
    print(f"  memory per entry: {entry:,.0f} B, {entry + cipher:,.0f} B with its cipher (counted as {ENTRY_BYTES:,} B)")
    print(f"  hits after filling {total:,} keys: {hits:,} of {total:,}")
    print(f"  hit: {hit_time / len(probe) * 1e9:,.0f} ns, {hit_time / dict_time:.1f}x a dict lookup")
    print(
        f"  evict one tenant: {large * 1e6:.2f} us among {total:,} keys, {small * 1e6:.2f} us among 1,000: "
        f"{large / small:.2f}x"
    )


if __name__ == "__main__":
    main()
