"""Tenant data records (the records the keys seal): put, get, delete, and the move of a
bounded chunk of them to the active version that a rewrap job is made of.

Every write counts the record against its version (what destroy checks) and against the
active version's usage budget, in the record's transaction, on one of the version's usage
rows (usage.py), so a tenant's writers do not wait on one item; a version whose budget is
spent is rotated by the writer that meets it.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from tenant_kms import usage
from tenant_kms.errors import Conflict, NotFound
from tenant_kms.models import KeyVersion, TenantConfig, TenantRecord
from tenant_kms.observability import count
from tenant_kms.sealing import RecordKey, open_record, seal_record
from tenant_kms.service import ACTIVE, RETIRED, TenantKms, b64, iso

WRITE_ATTEMPTS = 5
# Transactions of one chunk in flight at once, each counting on a usage row of its own.
CONCURRENT_TRANSACTIONS = 4
# DynamoDB's limits for one TransactWriteItems: 100 actions, 4 MB of items in all.
TRANSACTION_ACTIONS = 100
TRANSACTION_BYTES = 4_000_000
# Why a chunk stopped early.
_SPENT, _MOVED_ON = "spent", "moved_on"
CONDITION_FAILED = "ConditionalCheckFailed"
# What refused a record write.
_RECORD, _USAGE = "record", "usage"
# Spent versions one write may meet in a row (each took a whole budget of other writes).
WRITE_ROTATIONS = 16


@dataclass(frozen=True)
class Chunk:
    """What one migrate_chunk did."""

    migrated: int
    skipped: int  # changed by a caller meanwhile (the caller's write wins), or the active version moved on
    cursor: str | None  # name of the last record examined; None once every record was examined
    blocked: bool = False  # the active version spent its usage budget: a caller's next write rotates it


class StoredRecord(NamedTuple):
    """A record as a rewrap chunk's Query returned it: its raw attributes read once, no model
    built (for a chunk of small records that cost more than the rest of the move)."""

    name: str
    version: int
    revision: int
    usage_row: int | None
    rewrap_job: str | None
    ciphertext: bytes

    @classmethod
    def of(cls, item: dict[str, dict[str, Any]]) -> StoredRecord:
        usage_row, job = item.get("usage_row"), item.get("rewrap_job")
        return cls(
            item["name"]["S"],
            int(item["version"]["N"]),
            int(item["revision"]["N"]),
            int(usage_row["N"]) if usage_row is not None else None,
            job["S"] if job is not None else None,
            item["ciphertext"]["B"],
        )


_STORED_NAMES = {f"#{field}": field for field in StoredRecord._fields}


def _moved_item(
    active: KeyVersion, record: StoredRecord, ciphertext: bytes, usage_row: int, job_id: str | None, now: str
) -> dict[str, Any]:
    """The conditional put of ``record`` under the active version, as TenantRecord would
    serialise it (a unit test holds them equal): only if it still holds what was read."""
    item = {
        "tenant_id": {"S": active.tenant_id},
        "name": {"S": record.name},
        "version": {"N": str(active.version)},
        "ciphertext": {"B": ciphertext},
        "revision": {"N": str(record.revision + 1)},
        "updated_at": {"S": now},
        "usage_row": {"N": str(usage_row)},
    }
    if job_id is not None:
        item["rewrap_job"] = {"S": job_id}
    return {
        "TableName": TenantRecord.Meta.table_name,
        "Item": item,
        "ConditionExpression": "#revision = :revision AND #version = :version",
        "ExpressionAttributeNames": {"#revision": "revision", "#version": "version"},
        "ExpressionAttributeValues": {":revision": {"N": str(record.revision)}, ":version": {"N": str(record.version)}},
    }


class _Transaction:
    """The actions of one TransactWriteItems: the records' puts as raw items, the counts as
    the usage module writes them (it calls ``update`` as on pynamodb's TransactWrite)."""

    def __init__(self) -> None:
        self.puts: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []

    def update(self, model: Any, actions: list, condition: Any = None) -> None:
        self.updates.append(model.get_update_kwargs_from_instance(actions=actions, condition=condition))


class _Batch:
    """Records for one transaction: their puts plus the counts stay within the transaction's
    action and size limits (a record's attributes besides the ciphertext are small; the
    margin covers them)."""

    PER_RECORD_BYTES = 1024

    def __init__(self) -> None:
        self.moves: list[tuple[StoredRecord, bytes]] = []
        self.leaving: set[tuple[int, int | None]] = set()
        self.bytes = 0

    def add(self, record: StoredRecord, ciphertext: bytes) -> None:
        self.moves.append((record, ciphertext))
        self.leaving.add((record.version, record.usage_row))
        self.bytes += len(ciphertext) + len(record.name.encode()) + self.PER_RECORD_BYTES

    def fits(self, record: StoredRecord) -> bool:
        """Whether ``record`` fits too (its new ciphertext is the old one's size)."""
        leaving = len(self.leaving | {(record.version, record.usage_row)})
        actions = len(self.moves) + 1 + 1 + leaving  # the puts, a usage row of the active version, what they leave
        size = self.bytes + len(record.ciphertext) + len(record.name.encode()) + self.PER_RECORD_BYTES
        return actions <= TRANSACTION_ACTIONS and size <= TRANSACTION_BYTES


class TenantRecords:
    """One per function instance, beside the TenantKms whose keys, clock and tables it uses."""

    def __init__(self, kms: TenantKms) -> None:
        self.kms = kms
        # The active version's usage rows as each chunk under way read them, less what its
        # transactions took since: read once a chunk, not once a transaction.
        self._usage_seen: dict[tuple[str, int, str], usage.Usage] = {}
        self._usage_lock = threading.Lock()

    def put_record(self, tenant_id: str, name: str, value: bytes, *, actor: str) -> dict[str, Any]:
        with self.kms.audit.operation("put_record", actor=actor, tenant_id=tenant_id, record=name) as entry:
            attempts = rotations = 0
            full: set[int] = set()  # usage rows of the active version found spent
            named = True  # the config row's name of the active version is trusted until a usage row refuses it
            while attempts < WRITE_ATTEMPTS and rotations < WRITE_ROTATIONS:
                config, (existing,) = self.kms.read_with_config(tenant_id, TenantRecord(tenant_id, name))
                active = config.active_version
                row = self._with_usage_rows(
                    self.kms.active_row(config) if named else self.kms.version_row(tenant_id, active)
                )
                entry.update(version=row.version, provider=row.provider)
                session = self.kms.open_key(config, row)
                ciphertext = seal_record(session.record_key, tenant_id, name, row.version, value)
                usage_row = usage.pick(self.kms.settings.key_usage_budget, row, full)
                refused = (
                    _USAGE if usage_row is None else self._write_record(row, name, ciphertext, existing, usage_row)
                )
                if refused is None:
                    return {"name": name, "version": row.version}
                if refused == _USAGE:
                    named = False
                    if self._rotate_if_spent(config, row, actor=actor):
                        rotations += 1  # not contention: the version's budget of writes landed
                        full = set()
                        continue
                    if usage_row is not None and self._row_spent(row, usage_row):
                        full.add(usage_row)  # its share of the budget is sealed: another row has room
                        continue
                attempts += 1
                if attempts < WRITE_ATTEMPTS:
                    self.kms.backoff.pause(attempts)  # another writer won the race: let it finish
            raise Conflict(f'record "{name}" of tenant {tenant_id} is being changed concurrently; retry')

    def _write_record(
        self, active: KeyVersion, name: str, ciphertext: bytes, existing: TenantRecord | None, usage_row: int
    ) -> str | None:
        """Write a record under the active version, counted on its usage row ``usage_row``.

        None when written; else what refused it: the record (changed meanwhile) or the usage
        row (the version was retired or erased, or the row's share of the budget is spent).
        """
        tenant_id = active.tenant_id
        moves = existing is None or existing.version != active.version
        record = TenantRecord(
            tenant_id,
            name,
            version=active.version,
            ciphertext=ciphertext,
            revision=(existing.revision + 1) if existing else 1,
            updated_at=iso(self.kms.clock()),
            # A record rewritten under the same version stays counted where it was.
            usage_row=usage_row if moves else existing.usage_row,
        )
        try:
            # pynamodb sends puts before updates: reason 0 is the record's, 1 the usage row's.
            with TransactWrite(connection=self.kms.connection) as tx:
                tx.save(
                    record,
                    condition=(TenantRecord.revision == existing.revision) & (TenantRecord.version == existing.version)
                    if existing is not None
                    else TenantRecord.name.does_not_exist(),
                )
                # Every ciphertext stored counts against its version's usage budget; a write
                # refused here stores nothing, so its nonce is never seen.
                usage.seal_under(
                    tx,
                    active,
                    usage_row,
                    sealed=1,
                    moved_in=1 if moves else 0,
                    budget=self.kms.settings.key_usage_budget,
                )
                if moves and existing is not None:
                    usage.release(tx, tenant_id, existing.version, existing.usage_row, 1)
        except TransactWriteError as error:
            reasons = error.cancellation_reasons
            return _USAGE if len(reasons) > 1 and reasons[1] is not None else _RECORD
        return None

    def _with_usage_rows(self, row: KeyVersion) -> KeyVersion:
        """The active version with its usage rows: a version provisioned before they existed
        gets them on its first write (one writer adds them; the others read them)."""
        if row.usage_rows:
            return row
        try:
            with TransactWrite(connection=self.kms.connection) as tx:
                tx.update(
                    KeyVersion(row.tenant_id, row.version),
                    actions=[KeyVersion.usage_rows.set(usage.USAGE_ROWS)],
                    condition=(KeyVersion.status == ACTIVE)
                    & (KeyVersion.key_uid == row.key_uid)
                    & KeyVersion.usage_rows.does_not_exist(),
                )
                usage.open_rows(tx, row.tenant_id, row.version, row.key_uid)
        except TransactWriteError:
            pass  # another writer added them, or the version retired: the next read tells
        try:
            return KeyVersion.get(row.tenant_id, row.version, consistent_read=True)
        except DoesNotExist:
            return row  # erased meanwhile: the write finds no usage row and fails

    def _row_spent(self, active: KeyVersion, number: int) -> bool:
        counts = usage.version_usage(active)
        row = counts.rows.get(number)
        limit = usage.limits(self.kms.settings.key_usage_budget, active)[number]
        return row is not None and row.closed_at is None and (row.encryptions or 0) >= limit

    def _rotate_if_spent(self, config: TenantConfig, spent: KeyVersion, *, actor: str) -> bool:
        """True when ``spent`` has sealed its budget of records (KEY_USAGE_BUDGET) and the next
        version is active now: provisioned here, or by a concurrent writer whose provision won
        (the config's revision lets exactly one through). False: the write failed for another
        reason.
        """
        tenant_id = spent.tenant_id
        current, sealed = self._spent(spent)
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
            encryptions=sealed,
        )
        return True

    def _spent(self, row: KeyVersion) -> tuple[KeyVersion | None, int]:
        """The version as stored now, if it has sealed its budget of records, and how many it sealed."""
        try:
            current = KeyVersion.get(row.tenant_id, row.version, consistent_read=True)
        except DoesNotExist:
            return None, 0
        sealed = usage.encryptions_of(current, usage.version_usage(current))
        return (current if sealed >= self.kms.settings.key_usage_budget else None), sealed

    def get_record(self, tenant_id: str, name: str, *, actor: str) -> dict[str, Any]:
        with self.kms.audit.operation("get_record", actor=actor, tenant_id=tenant_id, record=name) as entry:
            config, record = self.kms.read_record(tenant_id, name)
            if record is None:
                raise NotFound(f'tenant {tenant_id} has no record "{name}"')
            # A record on the active version needs no read of it (the config row names it).
            row = (
                self.kms.active_row(config)
                if record.version == config.active_version
                else self.kms.version_row(tenant_id, record.version)
            )
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
                        usage.release(tx, tenant_id, record.version, record.usage_row, 1)
                except TransactWriteError:
                    continue
                return {"name": name, "deleted": True}
            raise Conflict(f'record "{name}" of tenant {tenant_id} is being changed concurrently; retry')

    def migrate_chunk(self, tenant_id: str, *, after: str | None, limit: int, job_id: str | None = None) -> Chunk:
        """Move the records after ``after`` (in name order) that are not on the active version,
        examining at most ``limit`` records, to the active version.

        The records go in transactions of up to 100 actions: each record's conditional put,
        the active version's count and the counts they leave. Resumable and safe to run
        twice or concurrently: a record is replaced only if it still holds what was read;
        when a caller's write got there first, only that record is dropped from the
        transaction (the caller's write wins) and the rest are written. One unwrap per
        (tenant, version), thanks to the session cache.

        A record moved by ``job_id`` is marked so: when a crash lost the count of a chunk, the
        job runs it again from the same ``after`` and counts those records as migrated once.
        """
        config = self.kms.unsealed(self.kms.require_config(tenant_id))
        active = self._with_usage_rows(self.kms.version_row(tenant_id, config.active_version))
        page, cursor = self._records_after(tenant_id, after, limit)
        migrated = skipped = 0
        stale = [record for record in page if record.version != active.version]
        if job_id is not None:
            # Moved by this job in a run whose count was lost (a worker died before it landed).
            migrated = sum(1 for r in page if r.version == active.version and r.rewrap_job == job_id)
        if not stale:
            return Chunk(migrated, skipped, cursor=cursor)
        new_key = self.kms.open_key(config, active).record_key
        seen = (tenant_id, active.version, active.key_uid)
        with self._usage_lock:
            self._usage_seen[seen] = usage.version_usage(active)
        try:
            migrated, skipped, stopped = self._migrate(config, active, new_key, stale, migrated, job_id)
        finally:
            with self._usage_lock:
                self._usage_seen.pop(seen, None)
        if stopped:
            # Budget spent: no version for the migration alone; a caller's next write
            # provisions the next one, and the migration goes on there from this page.
            # Active version moved on: the next chunk moves the page to that one.
            return Chunk(migrated, skipped, cursor=after, blocked=stopped == _SPENT)
        return Chunk(migrated, skipped, cursor=cursor)

    def _migrate(
        self,
        config: TenantConfig,
        active: KeyVersion,
        new_key: RecordKey,
        stale: list[StoredRecord],
        migrated: int,
        job_id: str | None,
    ) -> tuple[int, int, str | None]:
        """Seal ``stale`` under the active version and write them, a few transactions in flight."""
        tenant_id = active.tenant_id
        keys: dict[int, RecordKey] = {}
        skipped = 0
        stopped: str | None = None
        batch = _Batch()
        in_flight: list[Future] = []

        def settle(future: Future) -> None:
            nonlocal migrated, skipped, stopped
            moved, dropped, stop = future.result()
            migrated, skipped, stopped = migrated + moved, skipped + dropped, stopped or stop
            count("RecordsRewrapped", moved)

        # The next transaction is sealed while earlier ones are in flight.
        with ThreadPoolExecutor(CONCURRENT_TRANSACTIONS) as pool:
            for position, record in enumerate(stale):
                if record.version not in keys:
                    old_row = self.kms.version_row(tenant_id, record.version)
                    keys[record.version] = self.kms.open_key(config, old_row).record_key
                plaintext = open_record(keys[record.version], tenant_id, record.name, record.version, record.ciphertext)
                batch.add(record, seal_record(new_key, tenant_id, record.name, active.version, plaintext))
                if position + 1 < len(stale) and batch.fits(stale[position + 1]):
                    continue
                if len(in_flight) == CONCURRENT_TRANSACTIONS:
                    settle(in_flight.pop(0))
                if stopped:
                    break
                in_flight.append(pool.submit(self._move, active, batch.moves, job_id))
                batch = _Batch()
            for future in in_flight:
                settle(future)
        return migrated, skipped, stopped

    def _move(
        self, active: KeyVersion, moves: list[tuple[StoredRecord, bytes]], job_id: str | None = None
    ) -> tuple[int, int, str | None]:
        """Write ``moves`` under the active version in one transaction, dropping the records a
        caller changed meanwhile. (written, dropped, why the rest could not be written)."""
        tenant_id, budget = active.tenant_id, self.kms.settings.key_usage_budget
        now = iso(self.kms.clock())
        dropped = refusals = 0
        stop = None
        while moves:
            allocation = self._allocate(active, len(moves), fresh=refusals > 0)
            if allocation is None:
                return 0, dropped, _MOVED_ON
            if sum(allocation.values()) < len(moves):
                # The rest stay where they are; the migration comes back for them.
                moves, stop = moves[: sum(allocation.values())], _SPENT
                if not moves:
                    break
            leaving = Counter((record.version, record.usage_row) for record, _ in moves)
            if len(moves) + len(allocation) + len(leaving) > TRANSACTION_ACTIONS:
                self._give_back(active, allocation)  # each half takes its own
                half = len(moves) // 2
                first = self._move(active, moves[:half], job_id)
                if first[2] == _MOVED_ON:
                    return first[0], dropped + first[1], _MOVED_ON
                second = self._move(active, moves[half:], job_id)
                return first[0] + second[0], dropped + first[1] + second[1], second[2] or first[2] or stop
            rows = [number for number, taken in allocation.items() for _ in range(taken)]
            tx = _Transaction()
            for (record, ciphertext), usage_row in zip(moves, rows, strict=True):
                tx.puts.append(_moved_item(active, record, ciphertext, usage_row, job_id, now))
            for number, taken in allocation.items():
                usage.seal_under(tx, active, number, sealed=taken, moved_in=taken, budget=budget)
            for (version, usage_row), leaving_count in leaving.items():
                usage.release(tx, tenant_id, version, usage_row, leaving_count)
            try:
                # The puts go first, then the updates: reason i is moves[i]'s.
                self.kms.connection.transact_write_items(
                    condition_check_items=[], delete_items=[], put_items=tx.puts, update_items=tx.updates
                )
            except TransactWriteError as error:
                reasons = error.cancellation_reasons
                if not reasons:
                    raise
                changed = {
                    i
                    for i, reason in enumerate(reasons[: len(moves)])
                    if reason is not None and reason.code == CONDITION_FAILED
                }
                self._give_back(active, allocation)
                if changed:
                    dropped += len(changed)
                    moves = [move for i, move in enumerate(moves) if i not in changed]
                    continue
                refusals += 1
                if refusals < WRITE_ATTEMPTS and any(reasons[len(moves) : len(moves) + len(allocation)]):
                    continue  # the usage rows moved on (retired, or filled by callers): read them again
                raise Conflict(f"the record counts of tenant {tenant_id} changed concurrently; retry") from None
            return len(moves), dropped, stop
        return 0, dropped, stop

    def _allocate(self, active: KeyVersion, wanted: int, *, fresh: bool) -> dict[int, int] | None:
        """Usage rows to count ``wanted`` moved records on, taken from the chunk's view of them
        (read again when ``fresh``: a count's condition failed, so the view is stale); None
        when the version takes no more writes."""
        seen = (active.tenant_id, active.version, active.key_uid)
        with self._usage_lock:
            counts = None if fresh else self._usage_seen.get(seen)
            if counts is None:
                counts = usage.version_usage(active)
                if seen in self._usage_seen:
                    self._usage_seen[seen] = counts
            if not usage.is_open(active, counts):
                return None
            allocation = usage.allocate(self.kms.settings.key_usage_budget, active, counts, wanted)
            counts.take(allocation)
            return allocation

    def _give_back(self, active: KeyVersion, allocation: dict[int, int]) -> None:
        """A cancelled transaction's counts go back to the chunk's view of the usage rows."""
        with self._usage_lock:
            counts = self._usage_seen.get((active.tenant_id, active.version, active.key_uid))
            if counts is not None:
                counts.take({number: -taken for number, taken in allocation.items()})

    def _records_after(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[StoredRecord], str | None]:
        """One page of at most ``limit`` records after ``after``, and the name to go on after
        (None at the end of the tenant's records)."""
        query: dict[str, Any] = {
            "TableName": TenantRecord.Meta.table_name,
            "KeyConditionExpression": "#tenant = :tenant",
            "ProjectionExpression": ", ".join(_STORED_NAMES),  # what a move needs, nothing more
            "ExpressionAttributeNames": {"#tenant": "tenant_id", **_STORED_NAMES},
            "ExpressionAttributeValues": {":tenant": {"S": tenant_id}},
            "ConsistentRead": True,
            "Limit": limit,
        }
        if after is not None:
            query["KeyConditionExpression"] += " AND #name > :after"
            query["ExpressionAttributeValues"][":after"] = {"S": after}
        answer = self.kms.connection.dispatch("Query", query)
        last = answer.get("LastEvaluatedKey")
        return [StoredRecord.of(item) for item in answer.get("Items", [])], (last["name"]["S"] if last else None)

    @staticmethod
    def pending_rewrap(tenant_id: str) -> int:
        """Records still sealed under a retired version."""
        counts = usage.tenant_usage(tenant_id)
        return sum(
            usage.records_of(row, counts.get(row.version))
            for row in KeyVersion.query(tenant_id, consistent_read=True)
            if row.status == RETIRED
        )


def _get_record(tenant_id: str, name: str) -> TenantRecord | None:
    try:
        return TenantRecord.get(tenant_id, name, consistent_read=True)
    except DoesNotExist:
        return None
