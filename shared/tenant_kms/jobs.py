"""Jobs: long work on one tenant, done one bounded batch at a time.

A rewrap job moves a tenant's records from retired versions to the active one. Its unit of
work is ``{"tenant_id", "job_id"}``: RewrapFunction, invoked directly with it or receiving it
as an SQS message body, advances the job by one batch; while work remains, the worker sends
the next unit to the job queue, delayed by the rate's interval.

One running job per tenant: a slot row written only if absent names it, so two starts make one
job. A worker holds a lease on the job while it moves a batch; the batch's counts and the
cursor land in one write conditioned on that lease. A worker that dies mid-batch leaves its
lease to expire; the next unit then takes the job over and runs the batch again from the
same cursor, counting what the dead worker moved (records carry the job that moved them).

A purge job deletes an erased tenant's records, a batch per unit through the same queue and
worker; its last unit removes the tenant's remaining rows (its jobs and config among them).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from tenant_kms.erasure import ERASING, finish_erasure, purge_records, status_of
from tenant_kms.errors import Conflict, NotFound, Sealed, TenantKmsError
from tenant_kms.models import Job, RunningJob
from tenant_kms.observability import count
from tenant_kms.records import TenantRecords
from tenant_kms.service import iso
from tenant_kms.storage import queue_client

REWRAP, PURGE = "rewrap", "purge"
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
# A batch takes seconds; a worker silent this long is taken to be dead.
LEASE_SECONDS = 120
# A running job nobody advanced for this long past its due time lost its unit (e.g. the
# message went to the dead-letter queue): the next start sends a new one.
STALLED_SECONDS = LEASE_SECONDS + 60
# Finished jobs stay readable this long (the table's TTL removes them).
FINISHED_JOB_DAYS = 30
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"


class JobQueue:
    """Where units of work go: the job queue (SQS), or nowhere when the deployment has none."""

    def __init__(self, url: str, region: str, *, client: Any = None) -> None:
        self.url = url
        self.region = region
        self._client = client

    def send(self, unit: dict[str, str], delay_seconds: int) -> None:
        if not self.url:
            return
        if self._client is None:
            self._client = queue_client(self.region)
        self._client.send_message(QueueUrl=self.url, MessageBody=json.dumps(unit), DelaySeconds=delay_seconds)


class RewrapJobs:
    """One per function instance, beside the TenantRecords whose chunks it moves."""

    def __init__(self, records: TenantRecords, *, queue: JobQueue | None = None) -> None:
        self.records = records
        self.kms = records.kms
        self.queue = queue or JobQueue(self.kms.settings.job_queue_url, self.kms.settings.region)

    @property
    def _clock(self) -> Callable[[], float]:
        return self.kms.clock

    # ------------------------------------------------------------------ start

    def start(self, tenant_id: str, actor: str) -> dict[str, Any]:
        """Start the tenant's rewrap, or answer the one running. Moves no record itself."""
        self.kms.unsealed(self.kms.require_config(tenant_id))
        return self._start(tenant_id, actor, REWRAP, lambda: self.records.pending_rewrap(tenant_id))

    def start_purge(self, tenant_id: str, actor: str) -> dict[str, Any]:
        """Start deleting the records of a tenant whose keys are erased (it reads ``erasing``),
        or answer the purge running; a stalled one gets a new unit."""
        return self._start(tenant_id, actor, PURGE, lambda: None)

    def erase(self, tenant_id: str, actor: str) -> None:
        """Erase the tenant: its keys now (its data is unreadable once this returns), its
        records and remaining rows by the purge job, started here, or answered if it runs
        (a stalled one gets a new unit). The erase route and the re-verify sweep both end an
        erasure this way."""
        if self.kms.erase_keys(tenant_id, actor=actor):
            self.start_purge(tenant_id, actor)

    def _start(self, tenant_id: str, actor: str, kind: str, remaining: Callable[[], int | None]) -> dict[str, Any]:
        for _ in range(3):
            running = self._running(tenant_id, kind)
            if running is not None:
                return view(self._kick_if_stalled(running))
            now = self._clock()
            job = Job(
                tenant_id,
                uuid.uuid4().hex,
                kind=kind,
                status=RUNNING,
                actor=actor,
                migrated=0,
                skipped=0,
                remaining=remaining(),
                started_at=iso(now),
                updated_at=iso(now),
                next_at=now,
            )
            try:
                with TransactWrite(connection=self.kms.connection) as tx:
                    tx.save(
                        RunningJob(tenant_id, RunningJob.slot_of(kind), current=job.job_id),
                        condition=RunningJob.slot.does_not_exist(),
                    )
                    tx.save(job, condition=Job.job_id.does_not_exist())
            except TransactWriteError:
                continue  # another start won the slot: answer its job
            count("RewrapJobsStarted" if kind == REWRAP else "PurgeJobsStarted")
            self.kms.audit.event(f"{kind}_job_started", actor=actor, tenant_id=tenant_id, job_id=job.job_id)
            self.queue.send(_unit(job), 0)
            return view(job)
        raise Conflict(f"the {kind} of tenant {tenant_id} is being started concurrently; retry")

    def _running(self, tenant_id: str, kind: str) -> Job | None:
        """The tenant's running job of ``kind``; a slot left by a finished job is freed."""
        try:
            slot = RunningJob.get(tenant_id, RunningJob.slot_of(kind), consistent_read=True)
        except DoesNotExist:
            return None
        job = self._job(tenant_id, slot.current)
        if job is not None and job.status == RUNNING:
            return job
        _free_slot(tenant_id, kind, slot.current)
        return None

    def _kick_if_stalled(self, job: Job) -> Job:
        now = self._clock()
        if now > max(job.next_at, job.lease_until or 0) + STALLED_SECONDS:
            self.queue.send(_unit(job), 0)
        return job

    # ------------------------------------------------------------------ views

    @staticmethod
    def _job(tenant_id: str, job_id: str) -> Job | None:
        try:
            return Job.get(tenant_id, job_id, consistent_read=True)
        except DoesNotExist:
            return None

    def view(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        job = self._job(tenant_id, job_id) if _is_job_id(job_id) else None
        if job is None or job.kind != REWRAP:
            raise NotFound(f"tenant {tenant_id} has no rewrap job {job_id}")
        return view(job)

    # ---------------------------------------------------------------- advance

    def advance(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        """One batch of the job, if it is running, due and no live worker holds it."""
        job = self._job(tenant_id, job_id) if _is_job_id(job_id) else None
        if job is None or job.kind not in (REWRAP, PURGE):
            raise NotFound(f"tenant {tenant_id} has no job {job_id}")
        now = self._clock()
        if job.status != RUNNING or now < job.next_at or (job.lease_until or 0) > now:
            return view(job)  # finished, not due yet (the rate), or another worker is on it
        lease = uuid.uuid4().hex
        try:
            job.update(
                actions=[Job.lease_owner.set(lease), Job.lease_until.set(now + LEASE_SECONDS)],
                condition=(Job.status == RUNNING)
                & (Job.next_at == job.next_at)
                & (Job.lease_until.does_not_exist() | (Job.lease_until <= now)),
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return self._current(job)  # another worker took it first
        if job.kind == PURGE:
            return self._purge(job, lease, now)
        settings = self.kms.settings
        try:
            chunk = self.records.migrate_chunk(
                tenant_id, after=job.cursor, limit=settings.rewrap_batch_records, job_id=job_id
            )
        except Sealed as sealed:
            return self._finish(job, lease, FAILED, error=sealed)
        except (NotFound, Conflict) as gone:
            if status_of(tenant_id) in (None, ERASING):
                return self._finish(job, lease, FAILED, error=NotFound(f"tenant {tenant_id} was erased"))
            self._release(job, lease)
            raise gone
        except TenantKmsError:
            self._release(job, lease)  # a fault worth retrying: the unit comes again
            raise
        remaining = self.records.pending_rewrap(tenant_id)
        count("RecordsPendingRewrap", remaining)
        progress = [
            Job.migrated.add(chunk.migrated),
            Job.skipped.add(chunk.skipped),
            Job.remaining.set(remaining),
        ]
        if chunk.blocked:
            budget = Conflict(
                f"the active version of tenant {tenant_id} has spent its usage budget; a new record write "
                "provisions the next version, then start the rewrap again"
            )
            return self._finish(job, lease, FAILED, error=budget, progress=progress, cursor=chunk.cursor)
        if chunk.cursor is None:
            return self._finish(job, lease, SUCCEEDED, progress=progress)
        return self._next_batch(job, lease, now, chunk.cursor, progress)

    def _purge(self, job: Job, lease: str, now: float) -> dict[str, Any]:
        """One batch of the erased tenant's records; the last one removes its remaining rows,
        this job's own row included."""
        try:
            cursor = purge_records(job.tenant_id, after=job.cursor, limit=self.kms.settings.rewrap_batch_records)
            if cursor is None:
                finish_erasure(job.tenant_id)
        except TenantKmsError:
            self._release(job, lease)  # a fault worth retrying: the unit comes again
            raise
        if cursor is None:
            count("PurgeJobsSucceeded")
            self.kms.audit.event("purge_job_finished", actor=job.actor, tenant_id=job.tenant_id, job_id=job.job_id)
            job.status, job.finished_at = SUCCEEDED, iso(now)
            job.updated_at = job.finished_at
            return view(job)
        return self._next_batch(job, lease, now, cursor, [])

    def _next_batch(self, job: Job, lease: str, now: float, cursor: str, progress: list) -> dict[str, Any]:
        """The batch's progress and cursor land, the lease ends, and the next unit is queued
        for when the rate allows; nothing lands if another worker took the job over."""
        interval = self.kms.settings.rewrap_batch_interval_seconds
        actions = [
            *progress,
            Job.cursor.set(cursor),
            Job.updated_at.set(iso(now)),
            Job.next_at.set(now + interval),
            Job.lease_owner.remove(),
            Job.lease_until.remove(),
        ]
        if self._commit(job, lease, actions):
            self.queue.send(_unit(job), interval)
        return self._current(job)

    def _current(self, job: Job) -> dict[str, Any]:
        found = self._job(job.tenant_id, job.job_id)
        return view(found if found is not None else job)

    def _commit(self, job: Job, lease: str, actions: list) -> bool:
        """False when the lease was lost (another worker took the job over): nothing lands."""
        try:
            Job(job.tenant_id, job.job_id).update(actions=actions, condition=Job.lease_owner == lease)
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _release(self, job: Job, lease: str) -> None:
        self._commit(job, lease, [Job.lease_owner.remove(), Job.lease_until.remove()])

    def _finish(
        self,
        job: Job,
        lease: str,
        status: str,
        *,
        error: TenantKmsError | None = None,
        progress: list | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        now = self._clock()
        actions = [
            *(progress or []),
            Job.status.set(status),
            Job.updated_at.set(iso(now)),
            Job.finished_at.set(iso(now)),
            Job.expires_at.set(int(now) + FINISHED_JOB_DAYS * 86400),
            Job.lease_owner.remove(),
            Job.lease_until.remove(),
        ]
        if cursor is not None:
            actions.append(Job.cursor.set(cursor))
        if error is not None:
            actions.append(Job.error.set({"code": error.code, "message": error.message}))
        if self._commit(job, lease, actions):
            _free_slot(job.tenant_id, job.kind, job.job_id)
            count("RewrapJobsSucceeded" if status == SUCCEEDED else "RewrapJobsFailed")
            self.kms.audit.event(
                "rewrap_job_finished",
                actor=job.actor,
                tenant_id=job.tenant_id,
                job_id=job.job_id,
                outcome=status if error is None else error.code,
            )
        return self._current(job)


def _unit(job: Job) -> dict[str, str]:
    return {"tenant_id": job.tenant_id, "job_id": job.job_id}


def _is_job_id(job_id: str) -> bool:
    return re.fullmatch(JOB_ID_PATTERN, job_id) is not None


def _free_slot(tenant_id: str, kind: str, job_id: str) -> None:
    try:
        RunningJob(tenant_id, RunningJob.slot_of(kind)).delete(condition=RunningJob.current == job_id)
    except DeleteError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise  # taken by a newer job meanwhile, or gone: nothing to free


def view(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "tenant_id": job.tenant_id,
        "status": job.status,
        "migrated": int(job.migrated or 0),
        "skipped": int(job.skipped or 0),
        "remaining": None if job.remaining is None else int(job.remaining),
        "started_at": job.started_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        "error": job.error,
    }
