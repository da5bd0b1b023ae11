"""Tenant erasure: cryptographic erasure first, then the rest, resumable from any point.

Steps, each durable before the next starts:
1. fence: the config row reads ``erasing`` (and its revision moves, so no provisioning
   that read the old config can commit); from here on every key operation is refused;
2. every key version row of the tenant is deleted, wrapped key and all, with the usage
   rows that count its records: from this moment the tenant's data is unreadable by anyone;
3. the tenant's records go, a batch at a time (the purge job);
4. its jobs, its issued external id and the sweeps' visits of it, then the config row go.

The erase route answers after step 2 (``erase_keys``): the data is unreadable from then on,
and the purge job (``purge_records``, then ``finish_erasure``) removes the rest. An
interruption anywhere (throttling that outlasts the retries, a killed instance) leaves the
tenant ``erasing`` with no wrapped key left once any record or the config has gone; erasing
again, or the scheduled run, picks up where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable

from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError
from pynamodb.models import Model

from tenant_kms.errors import Conflict, NotFound
from tenant_kms.identity import forget_external_id
from tenant_kms.models import Job, KeyVersion, SweepVisit, TenantConfig, TenantRecord, VersionUsage

ERASING = "erasing"
# A writer that read a version row before the fence may still add to it; its write fails
# once the row is gone, but a row it created meanwhile is deleted by the next round.
KEY_ROUNDS = 3


def erasing_message(tenant_id: str) -> str:
    return f"tenant {tenant_id} is being erased; DELETE /tenants/{tenant_id} again finishes the erasure"


def status_of(tenant_id: str) -> str | None:
    """The tenant's status as stored now (``erasing`` once its erasure began); None: no config."""
    try:
        return TenantConfig.get(tenant_id, consistent_read=True, attributes_to_get=["status"]).status
    except DoesNotExist:
        return None


def erase_keys(tenant_id: str) -> bool:
    """Steps 1 and 2: cryptographic erasure. True when the tenant is left ``erasing`` for the
    purge; False when it had no config, so whatever else it had went here and then.
    NotFound if there was nothing to erase."""
    fenced = _fence(tenant_id)
    versions = _destroy_wrapped_keys(tenant_id)
    if fenced:
        return True
    # No config row: records cannot exist without one; at most an issued external id is left.
    records = _purge_all(tenant_id)
    _delete_jobs(tenant_id)
    _forget_visits(tenant_id)
    if not (forget_external_id(tenant_id) or versions or records):
        raise NotFound(f"tenant {tenant_id} does not exist")
    return False


def purge_records(tenant_id: str, *, after: str | None, limit: int) -> str | None:
    """Step 3, one batch: delete up to ``limit`` records named after ``after``. The last name
    deleted while more may follow; None once the tenant has no record after ``after``."""
    condition = TenantRecord.name > after if after is not None else None
    rows = list(
        TenantRecord.query(
            tenant_id, condition, consistent_read=True, limit=limit, attributes_to_get=["tenant_id", "name"]
        )
    )
    _delete(TenantRecord, rows)
    return rows[-1].name if rows and len(rows) >= limit else None


def finish_erasure(tenant_id: str) -> None:
    """Step 4, once no record is left: the jobs, the issued external id, the config row last."""
    _delete_jobs(tenant_id)
    # The issued external id goes too: a later tenant of that name is a new tenant.
    forget_external_id(tenant_id)
    _forget_visits(tenant_id)
    try:
        TenantConfig(tenant_id).delete(condition=TenantConfig.status == ERASING)
    except DeleteError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise  # gone meanwhile: a concurrent erase finished first


def _fence(tenant_id: str) -> bool:
    """Mark the config erasing; False when the tenant has no config row."""
    try:
        TenantConfig(tenant_id).update(
            actions=[TenantConfig.status.set(ERASING), TenantConfig.revision.add(1)],
            condition=TenantConfig.tenant_id.exists(),  # never create a stub row
        )
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return False
    return True


def _destroy_wrapped_keys(tenant_id: str) -> int:
    """Delete every key version row and its usage rows; the count of versions deleted. Only
    then may other rows go (a write needs its version's usage row, so none lands after)."""
    deleted = 0
    for _ in range(KEY_ROUNDS):
        rows = list(KeyVersion.query(tenant_id, consistent_read=True, attributes_to_get=["tenant_id", "version"]))
        counts = list(_usage_rows(tenant_id))
        if not rows and not counts:
            return deleted
        with KeyVersion.batch_write() as batch:
            for row in rows:
                batch.delete(row)
            for count in counts:  # same table, same key schema: one batch for both
                batch.delete(KeyVersion(count.partition, count.slot))
        deleted += len(rows)
    if any(KeyVersion.query(tenant_id, consistent_read=True, limit=1)) or any(_usage_rows(tenant_id)):
        raise Conflict(f"the keys of tenant {tenant_id} changed during erasure; {erasing_message(tenant_id)}")
    return deleted


def _usage_rows(tenant_id: str):
    return VersionUsage.query(
        VersionUsage.partition_of(tenant_id), consistent_read=True, attributes_to_get=["tenant_id", "version"]
    )


def _purge_all(tenant_id: str) -> int:
    return _delete(
        TenantRecord, TenantRecord.query(tenant_id, consistent_read=True, attributes_to_get=["tenant_id", "name"])
    )


def _delete_jobs(tenant_id: str) -> None:
    """Its jobs' rows, running ones and their slots included: a job of an erased tenant ends."""
    if Job.Meta.table_name == "unbound":
        return  # a function that runs no jobs
    _delete(Job, Job.query(tenant_id, consistent_read=True, attributes_to_get=["tenant_id", "job_id"]))


def _forget_visits(tenant_id: str) -> None:
    if SweepVisit.Meta.table_name == "unbound":
        return  # a function without the sweep table (local runs) holds no visits to forget
    _delete(SweepVisit, SweepVisit.query(tenant_id, consistent_read=True, attributes_to_get=["tenant_id", "sweep"]))


def _delete(model: type[Model], rows: Iterable[Model]) -> int:
    """Delete the rows read (their keys suffice), 25 to a batch write; how many."""
    deleted = 0
    with model.batch_write() as batch:
        for row in rows:
            batch.delete(row)
            deleted += 1
    return deleted
