"""Rewrap: moving a tenant's records from retired versions to the active one, a bounded
chunk at a time (records.migrate_chunk)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenant_kms.observability import count
from tenant_kms.records import TenantRecords

# Records examined per chunk.
CHUNK_RECORDS = 100


def rewrap(
    records: TenantRecords, tenant_id: str, *, actor: str, should_stop: Callable[[], bool] = lambda: False
) -> dict[str, Any]:
    """Move every record of the tenant to the active version, chunk by chunk, until ``should_stop``."""
    kms = records.kms
    with kms.audit.operation("rewrap", actor=actor, tenant_id=tenant_id) as entry:
        config = kms.unsealed(kms.require_config(tenant_id))
        active = kms.version_row(tenant_id, config.active_version)
        entry.update(version=active.version, provider=active.provider)
        migrated = skipped = 0
        complete = True
        cursor: str | None = None
        while True:
            if should_stop():
                complete = False
                break
            chunk = records.migrate_chunk(tenant_id, after=cursor, limit=CHUNK_RECORDS)
            migrated, skipped, cursor = migrated + chunk.migrated, skipped + chunk.skipped, chunk.cursor
            if chunk.blocked:
                complete = False
                break
            if cursor is None:
                break
        remaining = records.pending_rewrap(tenant_id)
        entry.update(migrated=migrated, skipped=skipped, remaining=remaining)
        count("RecordsPendingRewrap", remaining)
    return {
        "tenant_id": tenant_id,
        "active_version": active.version,
        "migrated": migrated,
        "skipped": skipped,
        "remaining": remaining,
        "complete": complete and remaining == 0,
    }
