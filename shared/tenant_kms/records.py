"""Tenant data records (the records the keys seal): put, get, delete, and the move of a
bounded chunk of them to the active version that a rewrap job is made of.

Every write counts the record against its version (``records``, what destroy checks) and
against the active version's usage budget (``encryptions``), in the record's transaction;
a version whose budget is spent is rotated by the writer that meets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.pagination import PageIterator
from pynamodb.transactions import TransactWrite

from tenant_kms.errors import Conflict, NotFound
from tenant_kms.models import KeyVersion, TenantConfig, TenantRecord
from tenant_kms.observability import count
from tenant_kms.sealing import open_record, seal_record
from tenant_kms.service import ACTIVE, RETIRED, TenantKms, b64, iso

WRITE_ATTEMPTS = 5
# DynamoDB's limits for one TransactWriteItems: 100 actions, 4 MB of items in all.
TRANSACTION_ACTIONS = 100
TRANSACTION_BYTES = 4_000_000
# Why a chunk stopped early.
_SPENT, _MOVED_ON = "spent", "moved_on"
# Spent versions one write may meet in a row (each took a whole budget of other writes).
WRITE_ROTATIONS = 16


@dataclass(frozen=True)
class Chunk:
    """What one migrate_chunk did."""

    migrated: int
    skipped: int  # changed by a caller meanwhile (the caller's write wins), or the active version moved on
    cursor: str | None  # name of the last record examined; None once every record was examined
    blocked: bool = False  # the active version spent its usage budget: a caller's next write rotates it


class _Batch:
    """Records for one transaction: their puts plus one count per version stay within the
    transaction's action and size limits (a record's attributes besides the ciphertext are
    small; the margin covers them)."""

    PER_RECORD_BYTES = 1024

    def __init__(self) -> None:
        self.moves: list[tuple[TenantRecord, bytes]] = []
        self.versions: set[int] = set()
        self.bytes = 0

    def add(self, record: TenantRecord, ciphertext: bytes) -> None:
        self.moves.append((record, ciphertext))
        self.versions.add(record.version)
        self.bytes += len(ciphertext) + len(record.name.encode()) + self.PER_RECORD_BYTES

    def fits(self, record: TenantRecord) -> bool:
        """Whether ``record`` fits too (its new ciphertext is the old one's size)."""
        versions = len(self.versions | {record.version})
        actions = len(self.moves) + 1 + 1 + versions  # the puts, the active version's count, one per old version
        size = self.bytes + len(record.ciphertext) + len(record.name.encode()) + self.PER_RECORD_BYTES
        return actions <= TRANSACTION_ACTIONS and size <= TRANSACTION_BYTES


class TenantRecords:
    """One per function instance, beside the TenantKms whose keys, clock and tables it uses."""

    def __init__(self, kms: TenantKms) -> None:
        self.kms = kms

    def put_record(self, tenant_id: str, name: str, value: bytes, *, actor: str) -> dict[str, Any]:
        with self.kms.audit.operation("put_record", actor=actor, tenant_id=tenant_id, record=name) as entry:
            attempts = rotations = 0
            while attempts < WRITE_ATTEMPTS and rotations < WRITE_ROTATIONS:
                config = self.kms.unsealed(self.kms.require_config(tenant_id))
                row = self.kms.version_row(tenant_id, config.active_version)
                entry.update(version=row.version, provider=row.provider)
                session = self.kms.open_key(config, row)
                existing = _get_record(tenant_id, name)
                ciphertext = seal_record(session.record_key, tenant_id, name, row.version, value)
                if self._write_record(row, name, ciphertext, existing):
                    return {"name": name, "version": row.version}
                if self._rotate_if_spent(config, row, actor=actor):
                    rotations += 1  # not contention: the version's budget of writes landed
                    continue
                attempts += 1
                if attempts < WRITE_ATTEMPTS:
                    self.kms.backoff.pause(attempts)  # another writer won the race: let it finish
            raise Conflict(f'record "{name}" of tenant {tenant_id} is being changed concurrently; retry')

    def _write_record(self, active: KeyVersion, name: str, ciphertext: bytes, existing: TenantRecord | None) -> bool:
        """Write a record under the active version, keeping every version's record count exact.

        False when a condition failed: the version was retired, or spent its usage budget, or
        the record changed, meanwhile.
        """
        tenant_id = active.tenant_id
        record = TenantRecord(
            tenant_id,
            name,
            version=active.version,
            ciphertext=ciphertext,
            revision=(existing.revision + 1) if existing else 1,
            updated_at=iso(self.kms.clock()),
        )
        # Every ciphertext stored counts against its version's usage budget; a write refused
        # here stores nothing, so its nonce is never seen.
        within_budget = (
            (KeyVersion.status == ACTIVE)
            & (KeyVersion.key_uid == active.key_uid)
            & (KeyVersion.encryptions.does_not_exist() | (KeyVersion.encryptions < self.kms.settings.key_usage_budget))
        )
        moves = existing is None or existing.version != active.version
        try:
            with TransactWrite(connection=self.kms.connection) as tx:
                tx.update(
                    KeyVersion(tenant_id, active.version),
                    actions=[KeyVersion.encryptions.add(1), *([KeyVersion.records.add(1)] if moves else [])],
                    condition=within_budget,
                )
                if moves and existing is not None:
                    tx.update(
                        KeyVersion(tenant_id, existing.version),
                        actions=[KeyVersion.records.add(-1)],
                        condition=KeyVersion.records > 0,
                    )
                tx.save(
                    record,
                    condition=(TenantRecord.revision == existing.revision) & (TenantRecord.version == existing.version)
                    if existing is not None
                    else TenantRecord.name.does_not_exist(),
                )
        except TransactWriteError:
            return False
        return True

    def _rotate_if_spent(self, config: TenantConfig, spent: KeyVersion, *, actor: str) -> bool:
        """True when ``spent`` has sealed its budget of records (KEY_USAGE_BUDGET) and the next
        version is active now: provisioned here, or by a concurrent writer whose provision won
        (the config's revision lets exactly one through). False: the write failed for another
        reason.
        """
        tenant_id = spent.tenant_id
        current = self._spent(spent)
        if current is None:
            return False
        if current.status != ACTIVE or config.active_version != spent.version:
            return True
        wrapper = self.kms.wrapper(config.provider, config.config, tenant_id)
        try:
            version = self.kms.add_version(tenant_id, config.provider, config.config, wrapper, config)
        except Conflict:
            return True  # another writer rotated first; the caller re-reads the active version
        count("KeyVersionsRotatedForBudget")
        self.kms.audit.event(
            "rotate_for_usage_budget",
            actor=actor,
            tenant_id=tenant_id,
            provider=config.provider,
            version=version,
            retired_version=spent.version,
            encryptions=current.encryptions,
        )
        return True

    def _spent(self, row: KeyVersion) -> KeyVersion | None:
        """The version as stored now, if it has sealed its budget of records."""
        try:
            current = KeyVersion.get(row.tenant_id, row.version, consistent_read=True)
        except DoesNotExist:
            return None
        return current if (current.encryptions or 0) >= self.kms.settings.key_usage_budget else None

    def get_record(self, tenant_id: str, name: str, *, actor: str) -> dict[str, Any]:
        with self.kms.audit.operation("get_record", actor=actor, tenant_id=tenant_id, record=name) as entry:
            config = self.kms.unsealed(self.kms.require_config(tenant_id))
            record = _get_record(tenant_id, name)
            if record is None:
                raise NotFound(f'tenant {tenant_id} has no record "{name}"')
            row = self.kms.version_row(tenant_id, record.version)
            entry.update(version=row.version, provider=row.provider)
            session = self.kms.open_key(config, row)
            value = open_record(session.record_key, tenant_id, name, record.version, record.ciphertext)
        return {"name": name, "value_b64": b64(value), "version": record.version}

    def delete_record(self, tenant_id: str, name: str, *, actor: str) -> dict[str, Any]:
        with self.kms.audit.operation("delete_record", actor=actor, tenant_id=tenant_id, record=name) as entry:
            self.kms.require_config(tenant_id)
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                if attempt > 1:
                    self.kms.backoff.pause(attempt - 1)  # another writer won the race: let it finish
                record = _get_record(tenant_id, name)
                if record is None:
                    raise NotFound(f'tenant {tenant_id} has no record "{name}"')
                entry["version"] = record.version
                try:
                    with TransactWrite(connection=self.kms.connection) as tx:
                        tx.delete(record, condition=TenantRecord.revision == record.revision)
                        tx.update(
                            KeyVersion(tenant_id, record.version),
                            actions=[KeyVersion.records.add(-1)],
                            condition=KeyVersion.records > 0,
                        )
                except TransactWriteError:
                    continue
                return {"name": name, "deleted": True}
            raise Conflict(f'record "{name}" of tenant {tenant_id} is being changed concurrently; retry')

    def migrate_chunk(self, tenant_id: str, *, after: str | None, limit: int, job_id: str | None = None) -> Chunk:
        """Move the records after ``after`` (in name order) that are not on the active version,
        examining at most ``limit`` records, to the active version.

        The records go in transactions of up to 100 actions: each record's conditional put
        and one count per version. Resumable and safe to run twice or concurrently: a record
        is replaced only if it still holds what was read; when a caller's write got there
        first, only that record is dropped from the transaction (the caller's write wins)
        and the rest are written. One unwrap per (tenant, version), thanks to the session cache.

        A record moved by ``job_id`` is marked so: when a crash lost the count of a chunk, the
        job runs it again from the same ``after`` and counts those records as migrated once.
        """
        config = self.kms.unsealed(self.kms.require_config(tenant_id))
        active = self.kms.version_row(tenant_id, config.active_version)
        page, cursor = _records_after(tenant_id, after, limit)
        versions: dict[int, KeyVersion] = {}
        migrated = skipped = 0
        batch = _Batch()
        stale = [record for record in page if record.version != active.version]
        if job_id is not None:
            # Moved by this job in a run whose count was lost (a worker died before it landed).
            migrated = sum(1 for r in page if r.version == active.version and r.rewrap_job == job_id)
        for position, record in enumerate(stale):
            if record.version not in versions:
                versions[record.version] = self.kms.version_row(tenant_id, record.version)
            old_key = self.kms.open_key(config, versions[record.version])
            new_key = self.kms.open_key(config, active)
            plaintext = open_record(old_key.tmk, tenant_id, record.name, record.version, record.ciphertext)
            ciphertext = seal_record(new_key.tmk, tenant_id, record.name, active.version, plaintext)
            batch.add(record, ciphertext)
            if position + 1 < len(stale) and batch.fits(stale[position + 1]):
                continue
            moved, dropped, stop = self._move(active, batch.moves, job_id)
            migrated, skipped, batch = migrated + moved, skipped + dropped, _Batch()
            count("RecordsRewrapped", moved)
            if stop:
                # Budget spent: no version for the migration alone; a caller's next write
                # provisions the next one, and the migration goes on there from this page.
                # Active version moved on: the next chunk moves the page to that one.
                return Chunk(migrated, skipped, cursor=after, blocked=stop == _SPENT)
        return Chunk(migrated, skipped, cursor=cursor)

    def _move(
        self, active: KeyVersion, moves: list[tuple[TenantRecord, bytes]], job_id: str | None = None
    ) -> tuple[int, int, str | None]:
        """Write ``moves`` under the active version in one transaction, dropping the records a
        caller changed meanwhile. (written, dropped, why the rest could not be written)."""
        tenant_id, budget = active.tenant_id, self.kms.settings.key_usage_budget
        now = iso(self.kms.clock())
        dropped = 0
        stop = None
        while moves:
            leaving: dict[int, int] = {}
            for record, _ in moves:
                leaving[record.version] = leaving.get(record.version, 0) + 1
            try:
                # pynamodb sends the puts first, then the updates: reason i is moves[i]'s.
                with TransactWrite(connection=self.kms.connection) as tx:
                    for record, ciphertext in moves:
                        tx.save(
                            TenantRecord(
                                tenant_id,
                                record.name,
                                version=active.version,
                                ciphertext=ciphertext,
                                revision=record.revision + 1,
                                updated_at=now,
                                rewrap_job=job_id,
                            ),
                            condition=(TenantRecord.revision == record.revision)
                            & (TenantRecord.version == record.version),
                        )
                    n = len(moves)
                    within_budget = KeyVersion.encryptions <= budget - n
                    if n <= budget:
                        within_budget |= KeyVersion.encryptions.does_not_exist()
                    tx.update(
                        KeyVersion(tenant_id, active.version),
                        actions=[KeyVersion.encryptions.add(n), KeyVersion.records.add(n)],
                        condition=(KeyVersion.status == ACTIVE)
                        & (KeyVersion.key_uid == active.key_uid)
                        & within_budget,
                    )
                    for version, leaving_count in leaving.items():
                        tx.update(
                            KeyVersion(tenant_id, version),
                            actions=[KeyVersion.records.add(-leaving_count)],
                            condition=KeyVersion.records >= leaving_count,
                        )
            except TransactWriteError as error:
                reasons = error.cancellation_reasons
                if not reasons:
                    raise
                changed = {i for i, reason in enumerate(reasons[: len(moves)]) if reason is not None}
                if changed:
                    dropped += len(changed)
                    moves = [move for i, move in enumerate(moves) if i not in changed]
                    continue
                room = self._room(active)
                if room is None:
                    return 0, dropped, _MOVED_ON
                if room < len(moves):
                    # The rest stay where they are; the migration comes back for them.
                    moves, stop = moves[:room], _SPENT
                    continue
                raise Conflict(f"the record counts of tenant {tenant_id} changed concurrently; retry") from None
            return len(moves), dropped, stop
        return 0, dropped, stop

    def _room(self, active: KeyVersion) -> int | None:
        """Records the active version may still seal; None once it is no longer the active one."""
        try:
            current = KeyVersion.get(active.tenant_id, active.version, consistent_read=True)
        except DoesNotExist:
            return None
        if current.status != ACTIVE or current.key_uid != active.key_uid:
            return None
        return max(0, self.kms.settings.key_usage_budget - (current.encryptions or 0))

    @staticmethod
    def pending_rewrap(tenant_id: str) -> int:
        """Records still sealed under a retired version."""
        return sum(row.records for row in KeyVersion.query(tenant_id, consistent_read=True) if row.status == RETIRED)

    @staticmethod
    def tenants_pending_rewrap() -> list[str]:
        pending = {
            row.tenant_id
            for row in KeyVersion.scan(
                filter_condition=(KeyVersion.status == RETIRED) & (KeyVersion.records > 0),
                attributes_to_get=["tenant_id", "version", "status", "records"],
            )
        }
        return sorted(pending)


def _records_after(tenant_id: str, after: str | None, limit: int) -> tuple[list[TenantRecord], str | None]:
    """One page of at most ``limit`` records after ``after``, and the name to go on after
    (None at the end of the tenant's records)."""
    query = TenantRecord.query(
        tenant_id,
        TenantRecord.name > after if after is not None else None,
        consistent_read=True,
        page_size=limit,
    )
    pages: PageIterator = query.page_iter
    raw = next(pages)
    page = [TenantRecord.from_raw_data(item) for item in raw.get("Items", [])]
    last = pages.last_evaluated_key
    return page, (last["name"]["S"] if last else None)


def _get_record(tenant_id: str, name: str) -> TenantRecord | None:
    try:
        return TenantRecord.get(tenant_id, name, consistent_read=True)
    except DoesNotExist:
        return None
