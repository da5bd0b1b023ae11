"""A key version's counts, spread over usage rows: the records it seals now (what destroy
checks) and the records it has ever sealed (the usage budget's count).

Why rows: every record write counts in its own transaction. DynamoDB cancels a transaction
that touches an item another ongoing transaction touches (TransactionConflict), a
ConditionCheck included, so counting on the version row made a tenant's writers wait on
each other. Each write now counts on one of the version's USAGE_ROWS rows, picked at
random, and the record keeps that row's number (``usage_row``): moving or deleting it later
takes the count back from the same row, so no row ever goes below zero.

What holds:
- a version's count is its rows' sum plus what the version row itself counted before the
  version had rows (records without ``usage_row``): counts from before still count;
- a write seals under a version only while its usage row exists, carries the version's
  ``key_uid`` and is open: provision closes every row of the version it retires in the
  same transaction, and erase deletes them, so a write that read the version earlier fails;
- destroy checks every row at zero (one ConditionCheck each) in the transaction that marks
  the version destroyed. Transactions are serializable: of a destroy and a write touching
  the same row at once, one is cancelled, so a version is destroyed only when nothing
  references it;
- the usage budget is split over the rows (``limits``), adding up to what the version row's
  own count left of it, so the version never seals more than the budget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pynamodb.transactions import TransactWrite

from tenant_kms.models import KeyVersion, VersionUsage

USAGE_ROWS = 16
# A version's rows sort as version * USAGE_SLOTS + row.
USAGE_SLOTS = 1000

_random = random.SystemRandom()


def slot(version: int, row: int) -> int:
    return version * USAGE_SLOTS + row


@dataclass
class Usage:
    """A version's counts as its usage rows hold them now."""

    records: int = 0
    encryptions: int = 0
    rows: dict[int, VersionUsage] = field(default_factory=dict)

    def add(self, number: int, row: VersionUsage) -> None:
        self.rows[number] = row
        self.records += row.records or 0
        self.encryptions += row.encryptions or 0

    def take(self, allocation: dict[int, int]) -> None:
        """Count what ``allocation`` seals (negative: gives it back) on the rows as held here."""
        for number, taken in allocation.items():
            row = self.rows[number]
            row.encryptions = (row.encryptions or 0) + taken
            row.records = (row.records or 0) + taken
            self.encryptions += taken
            self.records += taken


def tenant_usage(tenant_id: str) -> dict[int, Usage]:
    """Every version's usage rows, by version (one query)."""
    usage: dict[int, Usage] = {}
    for row in VersionUsage.query(VersionUsage.partition_of(tenant_id), consistent_read=True):
        version, number = divmod(int(row.slot), USAGE_SLOTS)
        usage.setdefault(version, Usage()).add(number, row)
    return usage


def version_usage(version: KeyVersion) -> Usage:
    usage = Usage()
    rows = VersionUsage.query(
        VersionUsage.partition_of(version.tenant_id),
        VersionUsage.slot.between(slot(version.version, 0), slot(version.version, USAGE_SLOTS - 1)),
        consistent_read=True,
    )
    for row in rows:
        usage.add(int(row.slot) % USAGE_SLOTS, row)
    return usage


def records_of(version: KeyVersion, usage: Usage | None) -> int:
    return (version.records or 0) + (usage.records if usage else 0)


def encryptions_of(version: KeyVersion, usage: Usage | None) -> int:
    return (version.encryptions or 0) + (usage.encryptions if usage else 0)


def limits(budget: int, version: KeyVersion) -> list[int]:
    """How many records each row may seal: the budget the version row's own count left, split."""
    left = max(0, budget - (version.encryptions or 0))
    rows = version.usage_rows or 0
    return [left // rows + (1 if number < left % rows else 0) for number in range(rows)]


def pick(budget: int, version: KeyVersion, full: set[int]) -> int | None:
    """A row to count one write on, at random among those that may still seal; None: all spent."""
    candidates = [n for n, limit in enumerate(limits(budget, version)) if limit > 0 and n not in full]
    return _random.choice(candidates) if candidates else None


def allocate(budget: int, version: KeyVersion, usage: Usage, wanted: int) -> dict[int, int]:
    """Rows to count ``wanted`` new ciphertexts on, as few as possible, among the open rows
    with room, from a row picked at random on (so concurrent transactions mostly take
    different rows); fewer in all when the budget has no more room."""
    room = {
        number: limit - (usage.rows[number].encryptions or 0)
        for number, limit in enumerate(limits(budget, version))
        if number in usage.rows
        and usage.rows[number].closed_at is None
        and usage.rows[number].key_uid == version.key_uid
    }
    rows = version.usage_rows or 1
    prefer = _random.randrange(rows)
    order = sorted((n for n in room if room[n] > 0), key=lambda n: (room[n] < wanted, (n - prefer) % rows))
    allocation: dict[int, int] = {}
    for number in order:
        if wanted == 0:
            break
        take = min(room[number], wanted)
        allocation[number] = take
        wanted -= take
    return allocation


def is_open(version: KeyVersion, usage: Usage) -> bool:
    """Whether writes may still seal under the version (its rows exist, are its, not closed)."""
    return any(row.closed_at is None and row.key_uid == version.key_uid for row in usage.rows.values())


# ------------------------------------------------------------- transaction parts


def open_rows(tx: TransactWrite, tenant_id: str, version: int, key_uid: str) -> None:
    for number in range(USAGE_ROWS):
        tx.save(
            VersionUsage(
                VersionUsage.partition_of(tenant_id), slot(version, number), key_uid=key_uid, records=0, encryptions=0
            ),
            condition=VersionUsage.slot.does_not_exist(),
        )


def close_rows(tx: TransactWrite, version: KeyVersion, now: str) -> None:
    for number in range(version.usage_rows or 0):
        tx.update(
            VersionUsage(VersionUsage.partition_of(version.tenant_id), slot(version.version, number)),
            actions=[VersionUsage.closed_at.set(now)],
            condition=VersionUsage.key_uid == version.key_uid,
        )


def seal_under(tx: TransactWrite, version: KeyVersion, row: int, *, sealed: int, moved_in: int, budget: int) -> None:
    """Count ``sealed`` new ciphertexts on ``row``, ``moved_in`` of them records new to the
    version; only while the row is open and has room for them."""
    limit = limits(budget, version)[row]
    tx.update(
        VersionUsage(VersionUsage.partition_of(version.tenant_id), slot(version.version, row)),
        actions=[VersionUsage.encryptions.add(sealed), *([VersionUsage.records.add(moved_in)] if moved_in else [])],
        condition=(VersionUsage.key_uid == version.key_uid)
        & VersionUsage.closed_at.does_not_exist()
        & (VersionUsage.encryptions <= limit - sealed),
    )


def release(tx: TransactWrite, tenant_id: str, version: int, row: int | None, records: int) -> None:
    """Take ``records`` back from where they were counted: a usage row, or the version row."""
    if row is None:
        tx.update(
            KeyVersion(tenant_id, version),
            actions=[KeyVersion.records.add(-records)],
            condition=KeyVersion.records >= records,
        )
        return
    tx.update(
        VersionUsage(VersionUsage.partition_of(tenant_id), slot(version, row)),
        actions=[VersionUsage.records.add(-records)],
        condition=VersionUsage.records >= records,
    )


def check_unreferenced(tx: TransactWrite, version: KeyVersion) -> None:
    for number in range(version.usage_rows or 0):
        tx.condition_check(
            VersionUsage,
            VersionUsage.partition_of(version.tenant_id),
            slot(version.version, number),
            condition=VersionUsage.records.does_not_exist() | (VersionUsage.records == 0),
        )
