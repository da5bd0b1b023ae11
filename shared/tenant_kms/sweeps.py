"""Sweeps: scheduled work over every tenant, fanned out through SQS.

A scheduled run pages through the tenants and sends one unit per tenant,
``{"sweep", "sweep_id", "tenant_id"}``, to the sweep's queue. Lambda's event source mapping
hands the units to the function in batches, as many at once as its MaximumConcurrency
allows; a unit whose work failed goes back to the queue alone (partial batch response) and,
after repeated failures, to the dead-letter queue.

Resumable: the scan position is stored after every page whose units were sent. A run whose
invocation's time runs out sends a continuation unit, ``{"sweep", "sweep_id", "page"}``, to
the sweep's queue, and the function receiving it pages on from there, so a sweep of many
tenants finishes without waiting for the next schedule. A run that died (no continuation
sent) leaves the sweep to the next scheduled run, which goes on from the stored page.

Once per sweep: before working, a unit claims the tenant's visit for its sweep with a
conditional write, and marks it done afterwards. A unit sent twice (a page sent again after a
cut-off, SQS delivering a message twice) finds the visit claimed or done and does nothing; a
claim whose worker died lapses with its lease, and the unit, back from the queue, takes it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from tenant_kms.erasure import ERASING, status_of
from tenant_kms.errors import Conflict, NotFound, Sealed, TenantKmsError, Unavailable
from tenant_kms.jobs import RewrapJobs
from tenant_kms.models import SWEEP_RUNS, SweepRun, SweepVisit, TenantConfig
from tenant_kms.observability import count, logger
from tenant_kms.rotation import WrappingKeyRotation
from tenant_kms.schedule import deadline
from tenant_kms.service import ACTIVE, iso
from tenant_kms.settings import ConfigurationError
from tenant_kms.storage import queue_client
from tenant_kms.unsealing import Unsealing

PAGING, PAGED = "paging", "paged"
CLAIMED, DONE = "claimed", "done"
# Tenants read per page: each page's units are sent, then its position stored.
PAGE_SIZE = 100
# SendMessageBatch takes at most 10 messages.
SEND_BATCH = 10
SEND_ATTEMPTS = 3
# Outcomes of a visit that leave no tenant behind: its visit row goes too.
TENANT_GONE = ("erased", "gone")
# Longer than any unit can wait in a queue (their retention is 4 days): a visit outlives its units.
VISIT_TTL_SECONDS = 14 * 24 * 3600

Work = Callable[[str, Callable[[], bool]], dict[str, int]]
Pages = Callable[[dict | None, int], tuple[list[str], dict | None]]


@dataclass(frozen=True)
class Sweep:
    """One sweep: where its units go, how its tenants are paged, what a visit does.

    ``work(tenant_id, should_stop)`` does one tenant's share and answers counts to add to the
    sweep's totals; a ``TenantKmsError`` is that tenant's outcome (counted, not retried), except
    ``Unavailable`` (our own tables, after their retries): the unit goes back to the queue."""

    name: str
    queue_url: str
    pages: Pages
    work: Work


def every_tenant(position: dict | None, limit: int) -> tuple[list[str], dict | None]:
    """A page of the config table: every tenant, erasing ones included."""
    page = TenantConfig.scan(limit=limit, page_size=limit, last_evaluated_key=position, attributes_to_get=["tenant_id"])
    tenants = [config.tenant_id for config in page]
    return tenants, page.last_evaluated_key


def sealed_tenants(position: dict | None, limit: int) -> tuple[list[str], dict | None]:
    """A page of the sparse index of sealed tenants: its cost follows the sealed tenants, not all of them."""
    page = TenantConfig.sealed.scan(limit=limit, page_size=limit, last_evaluated_key=position)
    tenants = [config.tenant_id for config in page]
    return tenants, page.last_evaluated_key


class Sweeps:
    """One per function instance: runs its sweeps' pages and visits their units."""

    def __init__(self, sweeps: Iterable[Sweep], *, clock: Callable[[], float], region: str, sqs: Any = None) -> None:
        self.sweeps = {sweep.name: sweep for sweep in sweeps}
        self.clock = clock
        self.region = region
        self._sqs = sqs

    @property
    def sqs(self) -> Any:
        if self._sqs is None:  # built on first use: admin calls never pay for it
            self._sqs = queue_client(self.region)
        return self._sqs

    # ------------------------------------------------------------------ paging

    def run(self, name: str, context: Any, *, budget_ms: int | None = None, unfinished: bool = False) -> dict[str, Any]:
        """Send the units of the sweep under way (or of a new one) page by page, until the
        tenants are all sent or the invocation's time is nearly spent. ``unfinished``: a sweep
        whose units are not all visited yet is the one under way (it is answered, not repeated)."""
        sweep = self._sweep(name)
        stop = deadline(context, budget_ms)
        run, resumed = self._current_or_new(name, unfinished=unfinished)
        sent = self._page(sweep, run, stop)
        return {**self.status(name), "sent_now": sent, "resumed": resumed}

    def _sweep(self, name: str) -> Sweep:
        sweep = self.sweeps[name]
        if not sweep.queue_url:
            raise ConfigurationError(f"sweep {name} has no queue: its queue URL setting is empty")
        return sweep

    def _page(self, sweep: Sweep, run: SweepRun, stop: Callable[[], bool]) -> int:
        sent = 0
        while run.status == PAGING:
            if stop():
                self._continue_later(sweep, run)
                break
            position = json.loads(run.position) if run.position else None
            tenants, after = sweep.pages(position, PAGE_SIZE)
            self._send(sweep, [self._unit(sweep, run.sweep_id, tenant_id) for tenant_id in tenants])
            if not self._advance(run, after, len(tenants)):
                break  # another run advanced it meanwhile and goes on from there
            sent += len(tenants)
        count("SweepUnitsSent", sent)
        return sent

    def _continue_later(self, sweep: Sweep, run: SweepRun) -> None:
        """Out of time with pages left: the sweep's queue hands the rest to another invocation.
        The unit names the page it follows, so a copy of it, or one overtaken by a scheduled
        run, pages nothing."""
        self._send(sweep, [{"sweep": sweep.name, "sweep_id": run.sweep_id, "page": int(run.pages)}])
        count("SweepContinuations")

    def _go_on(self, sweep: Sweep, sweep_id: str, page: int, stop: Callable[[], bool]) -> None:
        """A continuation unit: page on, if the sweep still stands where the unit left it."""
        run = self._run(sweep.name)
        if run is not None and (run.sweep_id, run.status, int(run.pages)) == (sweep_id, PAGING, page):
            self._page(sweep, run, stop)

    @staticmethod
    def _unit(sweep: Sweep, sweep_id: str, tenant_id: str) -> dict[str, str]:
        return {"sweep": sweep.name, "sweep_id": sweep_id, "tenant_id": tenant_id}

    def _current_or_new(self, name: str, *, unfinished: bool = False) -> tuple[SweepRun, bool]:
        """The sweep still paging (or, if ``unfinished``, still being visited), or a new one
        when the last is done with (or there was none)."""
        for _ in range(3):
            current = self._run(name)
            if current is not None and (
                current.status == PAGING or (unfinished and int(current.visited) < int(current.sent))
            ):
                return current, True
            now = self.clock()
            run = SweepRun(
                SWEEP_RUNS,
                name,
                sweep_id=f"{iso(now)}~{uuid.uuid4().hex[:8]}",
                status=PAGING,
                pages=0,
                sent=0,
                visited=0,
                totals={},
                started_at=iso(now),
            )
            try:
                run.save(
                    condition=SweepRun.sweep.does_not_exist()
                    if current is None
                    else (SweepRun.sweep_id == current.sweep_id)
                )
            except PutError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
                continue  # another run started one first: take that one
            return run, False
        raise Unavailable(f"sweep {name} is being started by several runs at once; retry", 1)

    @staticmethod
    def _run(name: str) -> SweepRun | None:
        try:
            return SweepRun.get(SWEEP_RUNS, name, consistent_read=True)
        except DoesNotExist:
            return None

    def _send(self, sweep: Sweep, units: list[dict[str, Any]]) -> None:
        for start in range(0, len(units), SEND_BATCH):
            entries = [
                {"Id": str(number), "MessageBody": json.dumps(unit)}
                for number, unit in enumerate(units[start : start + SEND_BATCH])
            ]
            for _ in range(SEND_ATTEMPTS):
                failed = self.sqs.send_message_batch(QueueUrl=sweep.queue_url, Entries=entries).get("Failed") or []
                if not failed:
                    break
                again = {entry["Id"] for entry in failed}
                entries = [entry for entry in entries if entry["Id"] in again]
            else:
                raise Unavailable(f"the {sweep.name} queue refused {len(entries)} units; the next run sends them", 1)

    def _advance(self, run: SweepRun, after: dict | None, sent: int) -> bool:
        """Store the position after a page whose units were all sent; False if another run moved it."""
        actions = [SweepRun.pages.add(1), SweepRun.sent.add(sent)]
        if after is None:
            actions += [
                SweepRun.position.remove(),
                SweepRun.status.set(PAGED),
                SweepRun.paged_at.set(iso(self.clock())),
            ]
        else:
            actions.append(SweepRun.position.set(json.dumps(after, sort_keys=True)))
        try:
            run.update(actions=actions, condition=(SweepRun.sweep_id == run.sweep_id) & (SweepRun.pages == run.pages))
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def status(self, name: str) -> dict[str, Any]:
        """The latest sweep of that name: finished when every unit sent was visited."""
        run = self._run(name)
        if run is None:
            return {"sweep": name, "sweep_id": None, "status": None, "finished": False}
        totals = {key: int(value) for key, value in sorted(run.totals.as_dict().items())}
        return {
            "sweep": name,
            "sweep_id": run.sweep_id,
            "status": run.status,
            "started_at": run.started_at,
            "paged_at": run.paged_at,
            "sent": int(run.sent),
            "visited": int(run.visited),
            "totals": totals,
            "finished": run.status == PAGED and run.visited >= run.sent,
        }

    # ---------------------------------------------------------------- visiting

    def visit(
        self, event: dict[str, Any], context: Any, *, other: Callable[[SQSRecord], None] | None = None
    ) -> dict[str, Any]:
        """A batch of units from Lambda's SQS event source; the failed ones are answered back.
        ``other`` takes the records that are no sweep's units (a job's, on the same function)."""
        stop = deadline(context)
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

        def unit(record: SQSRecord) -> None:
            body = _json_body(record)
            if not (isinstance(body, dict) and "sweep" in body) and other is not None:
                other(record)
                return
            if not isinstance(body, dict) or body.get("sweep") not in self.sweeps:
                raise ValueError("not a unit of a sweep this function runs")
            if stop():
                raise TimeoutError("no time left in this invocation; the unit waits in the queue")
            sweep = self.sweeps[body["sweep"]]
            if "tenant_id" not in body:
                self._go_on(sweep, str(body["sweep_id"]), int(body["page"]), stop)
                return
            remaining_ms = context.get_remaining_time_in_millis()
            self._visit(sweep, str(body["sweep_id"]), str(body["tenant_id"]), stop, remaining_ms)

        # A continuation pages until the invocation's time is nearly out: the batch's visits first.
        records = sorted(event["Records"], key=_is_continuation)
        return process_partial_response(
            event={**event, "Records": records}, record_handler=unit, processor=processor, context=context
        )

    def _visit(self, sweep: Sweep, sweep_id: str, tenant_id: str, stop: Callable[[], bool], lease_ms: int) -> None:
        claim = uuid.uuid4().hex
        if not self._claim(sweep.name, sweep_id, tenant_id, claim, lease_ms):
            count("SweepUnitsRepeated")
            return
        try:
            totals = sweep.work(tenant_id, stop)
        except Unavailable:
            self._release(sweep.name, tenant_id, claim)
            raise
        except TenantKmsError as error:
            logger.warning("sweep visit failed", sweep=sweep.name, tenant_id=tenant_id, code=error.code)
            count("ScheduledTenantFailures")
            totals, outcome = {"failed": 1}, f"failed:{error.code}"
        except Exception:
            self._release(sweep.name, tenant_id, claim)
            raise
        else:
            outcome = ",".join(sorted(totals))
        self._done(sweep.name, sweep_id, tenant_id, claim, totals, outcome)

    def _claim(self, name: str, sweep_id: str, tenant_id: str, claim: str, lease_ms: int) -> bool:
        now = self.clock()
        try:
            SweepVisit(tenant_id, name).update(
                actions=[
                    SweepVisit.sweep_id.set(sweep_id),
                    SweepVisit.state.set(CLAIMED),
                    SweepVisit.claim.set(claim),
                    SweepVisit.lease_until.set(int(now + lease_ms / 1000) + 1),
                    SweepVisit.expires_at.set(int(now) + VISIT_TTL_SECONDS),
                ],
                condition=SweepVisit.sweep_id.does_not_exist()
                | (SweepVisit.sweep_id < sweep_id)
                | ((SweepVisit.sweep_id == sweep_id) & (SweepVisit.state == CLAIMED) & (SweepVisit.lease_until < now)),
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False  # visited, being visited, or visited by a later sweep already
        return True

    @staticmethod
    def _release(name: str, tenant_id: str, claim: str) -> None:
        """Let the unit, back from the queue, claim the visit again at once."""
        try:
            SweepVisit(tenant_id, name).update(
                actions=[SweepVisit.lease_until.set(0)], condition=SweepVisit.claim == claim
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise

    def _done(self, name: str, sweep_id: str, tenant_id: str, claim: str, totals: dict[str, int], outcome: str) -> None:
        """The visit done and counted in the sweep, in one transaction, so ``visited`` is exact.
        A tenant the visit found erased (or erased itself) keeps no row here."""
        visit = SweepVisit(tenant_id, name)
        gone = outcome in TENANT_GONE
        done = [
            SweepVisit.state.set(DONE),
            SweepVisit.visited_at.set(iso(self.clock())),
            SweepVisit.outcome.set(outcome),
        ]
        counted = [SweepRun.visited.add(1), *(SweepRun.totals[key].add(value) for key, value in totals.items())]
        try:
            with TransactWrite(connection=SweepRun._get_connection().connection) as tx:
                if gone:
                    tx.delete(visit, condition=SweepVisit.claim == claim)
                else:
                    tx.update(visit, actions=done, condition=SweepVisit.claim == claim)
                tx.update(SweepRun(SWEEP_RUNS, name), actions=counted, condition=SweepRun.sweep_id == sweep_id)
        except TransactWriteError as exc:
            reasons = [getattr(reason, "code", None) for reason in exc.cancellation_reasons or []]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return  # the claim lapsed and another unit took it over: its visit counts
            if reasons[1:2] != ["ConditionalCheckFailed"]:
                raise
            # A later sweep has started: this one's totals are history; the visit still counts.
            if gone:
                visit.delete(condition=SweepVisit.claim == claim)
            else:
                visit.update(actions=done, condition=SweepVisit.claim == claim)
        count("SweepUnitsVisited")

    @staticmethod
    def visit_of(name: str, tenant_id: str) -> dict[str, Any] | None:
        """The tenant's last visit by that sweep."""
        try:
            visit = SweepVisit.get(tenant_id, name, consistent_read=True)
        except DoesNotExist:
            return None
        return {"sweep_id": visit.sweep_id, "state": visit.state, "outcome": visit.outcome}


def _json_body(record: SQSRecord) -> Any:
    try:
        return json.loads(record.body)
    except ValueError:
        return None


def _is_continuation(record: dict[str, Any]) -> bool:
    try:
        body = json.loads(record.get("body") or "")
    except (TypeError, ValueError):
        return False
    return isinstance(body, dict) and "sweep" in body and "tenant_id" not in body


# ------------------------------------------------------------------ the sweeps

REVERIFY, REPOLL = "reverify", "repoll_sealed"


def reverify(jobs: RewrapJobs, queue_url: str) -> Sweep:
    """Probe every tenant's config, so a broken grant shows before the tenant seals; an
    erasure an interruption left behind is taken up instead (it holds no usable key): its
    keys erased if any were left, and its purge job started, or kicked if it stalled. The
    purge deletes the records at the jobs' rate, as after the erase route."""
    service = jobs.kms

    def work(tenant_id: str, should_stop: Callable[[], bool]) -> dict[str, int]:
        try:
            verified = service.verify(tenant_id, actor="schedule")
        except NotFound:
            return {"gone": 1}  # erased since the page was read
        except Conflict:
            if status_of(tenant_id) != ERASING:
                raise
            jobs.erase(tenant_id, actor="schedule")
            return {"erased": 1}
        return {"verified": 1} if verified["ok"] else {"verification_failed": 1}

    return Sweep(REVERIFY, queue_url, every_tenant, work)


def repoll(unsealing: Unsealing, queue_url: str) -> Sweep:
    """Try the active version of every sealed tenant: a restored grant unseals it."""

    def work(tenant_id: str, should_stop: Callable[[], bool]) -> dict[str, int]:
        # active: unsealed now (or meanwhile, by a configure or the unseal route)
        return {"active" if unsealing.repoll(tenant_id)["status"] == ACTIVE else "sealed": 1}

    return Sweep(REPOLL, queue_url, sealed_tenants, work)


REWRAP, REWRAP_KEYS = "rewrap", "rewrap_wrapping_keys"


def rewrap(jobs: RewrapJobs, queue_url: str) -> Sweep:
    """Start the rewrap job of every tenant with records under a retired version (or find the
    one running): the job moves them at the tenant's rate, as after ``POST …/rewrap``."""

    def work(tenant_id: str, should_stop: Callable[[], bool]) -> dict[str, int]:
        if not jobs.records.pending_rewrap(tenant_id):
            return {"nothing_pending": 1}
        asked_at = iso(jobs.kms.clock())
        try:
            job = jobs.start(tenant_id, actor="schedule")
        except Sealed:
            return {"sealed": 1}  # its records wait under the retired version until it unseals
        except NotFound:
            return {"gone": 1}
        except Conflict:
            if status_of(tenant_id) != ERASING:
                raise
            return {"erasing": 1}
        return {"job_started" if job["started_at"] >= asked_at else "job_running": 1}

    return Sweep(REWRAP, queue_url, every_tenant, work)


def rewrap_wrapping_keys(rotation: WrappingKeyRotation, queue_url: str) -> Sweep:
    """Re-wrap every tenant's key versions held under a wrapping key that is no longer current."""

    def work(tenant_id: str, should_stop: Callable[[], bool]) -> dict[str, int]:
        return rotation.rewrap_tenant(tenant_id, actor="schedule", should_stop=should_stop)

    return Sweep(REWRAP_KEYS, queue_url, every_tenant, work)
