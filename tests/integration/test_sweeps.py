"""Sweeps fan out over every tenant through SQS, as deployed: the scheduled run pages the
config table into the queue, Lambda's event source (played by local_queues.deliver, with the
event Lambda sends) hands the units to the function, and a partial batch response returns
the failed ones. Every tenant is visited exactly once per sweep, even when the sweep is cut
off and resumed and when a unit arrives twice. A run cut off by its deadline hands the rest
of the paging on through a continuation unit, so the sweep ends without the next schedule."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter

import pytest
from deployment import own_tables
from local_gateway import LocalContext
from local_queues import lambda_event
from support import (
    JOB_TIMEOUT_MS,
    Clock,
    Function,
    emf_metrics,
    http_sample,
    records_on_a_retired_version,
    rewrap_job_get,
    sample,
)

from tenant_kms.models import SweepVisit, TenantConfig
from tenant_kms.sweeps import PAGE_SIZE, REPOLL, REVERIFY, REWRAP, REWRAP_KEYS, Sweeps

TENANTS = 2_000


class CutOff(LocalContext):
    """An invocation whose time runs out once ``pages`` pages were sent: the run stops as at its deadline."""

    def __init__(self, pages: int) -> None:
        super().__init__("VerifyFunction", timeout_ms=JOB_TIMEOUT_MS)
        self.asks = 1 + pages  # one ask sets the margin, then one before every page

    def get_remaining_time_in_millis(self) -> int:
        self.asks -= 1
        return JOB_TIMEOUT_MS if self.asks >= 0 else 0


class PageBudget:
    """The event source's consumer, each invocation's time running out once it paged
    ``pages`` pages (the deadline the handler reads, not wall time): a continuation unit pages
    that much, then hands on to the next. Keeps the continuation units it was handed."""

    def __init__(self, function: Function, pages: int = 1) -> None:
        self.function, self.logical_id, self.pages = function, function.logical_id, pages
        self.read = self.handed = 0
        self.continuations: set[str] = set()  # message ids: a unit back from the queue is handed again
        sweeps = function.module.sweeps
        for name, sweep in list(sweeps.sweeps.items()):
            sweeps.sweeps[name] = dataclasses.replace(sweep, pages=self._counted(sweep.pages))

    def _counted(self, pages):
        def read(position, limit):
            self.read += 1
            return pages(position, limit)

        return read

    def __call__(self, event: dict, *, timeout_ms: int) -> dict:
        for record in event["Records"]:
            if "tenant_id" not in json.loads(record["body"]):
                self.handed += 1
                self.continuations.add(record["messageId"])
        started = self.read
        context = LocalContext(self.logical_id, timeout_ms=timeout_ms)
        context.get_remaining_time_in_millis = lambda: timeout_ms if self.read - started < self.pages else 0
        return self.function.module.lambda_handler(event, context)


class Killed(Exception):
    """The instance died (timeout, out of memory) in the middle of a page."""


def killed_after(function: Function, batches: int) -> None:
    """The function's SQS client dies at its ``batches``-th SendMessageBatch of this run."""
    calls = iter(range(batches))

    def die(**_):
        if next(calls, None) is None:
            raise Killed

    function.module.sweeps.sqs.meta.events.register("before-call.sqs.SendMessageBatch", die)


@pytest.fixture
def fleet(monkeypatch, queues) -> list[str]:
    return global_tenants(monkeypatch, TENANTS)


def active_config(tenant_id: str, provider: str = "global") -> TenantConfig:
    """A tenant's config row as configure leaves it, on version 1."""
    return TenantConfig(
        tenant_id,
        provider=provider,
        config={},
        status="active",
        active_version=1,
        revision=1,
        created_at="2026-11-29T00:00:00.000Z",
        updated_at="2026-11-29T00:00:00.000Z",
    )


def global_tenants(monkeypatch, count: int) -> list[str]:
    """Tenants on the global wrap in tables of the test's own, their config rows written
    directly (a batch write): re-verifying them needs no provider."""
    own_tables(monkeypatch)
    Function("verify")  # binds the models to this test's tables
    tenants = [f"fleet-{n:05d}" for n in range(count)]
    with TenantConfig.batch_write() as batch:
        for tenant_id in tenants:
            batch.save(active_config(tenant_id))
    return tenants


def counting_verifies(function: Function) -> Counter:
    """The real verify, counted per tenant."""
    verified: Counter = Counter()
    real = function.service.verify

    def verify(tenant_id: str, *, actor: str) -> dict:
        verified[tenant_id] += 1
        return real(tenant_id, actor=actor)

    function.service.verify = verify
    return verified


def sent_twice(queues, queue_url: str, batches: int) -> None:
    """SQS delivers at least once: some of the waiting units arrive a second time."""
    seen = []
    for _ in range(batches):
        seen += queues.client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    for message in seen:
        queues.client.send_message(QueueUrl=queue_url, MessageBody=message["Body"])
        queues.client.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )


def test_a_sweep_cut_off_and_resumed_visits_every_tenant_exactly_once(fleet, queues):
    consumer = Function("verify")
    verified = counting_verifies(consumer)
    queue_url = queues.urls["ReverifyQueue"]
    scheduled = sample("verify_scheduled")

    # When the schedule's run is cut off at its deadline after one page (its continuation unit
    # waits behind the tenants' units), and the next scheduled run comes first and is cut off too
    scheduler = Function("verify")  # a warm instance runs the schedule, others visit
    first = scheduler.module.lambda_handler(scheduled, CutOff(pages=1))
    assert (first["status"], first["sent"], first["resumed"]) == ("paging", PAGE_SIZE, False)
    second = scheduler.module.lambda_handler(scheduled, CutOff(pages=1))
    assert (second["sweep_id"], second["sent"], second["resumed"]) == (first["sweep_id"], 2 * PAGE_SIZE, True)

    # and the one after dies in the middle of a page (sending no continuation)
    dying = Function("verify")
    killed_after(dying, batches=7)
    with pytest.raises(Killed):
        dying(scheduled, timeout_ms=JOB_TIMEOUT_MS)
    # (the units it sent wait, some twice, and the stored position is before its page)
    assert consumer.module.sweeps.status("reverify")["sent"] == 2 * PAGE_SIZE
    sent_twice(queues, queue_url, batches=2)

    # When the event source hands everything over, each invocation's time running out after a page
    visiting = PageBudget(consumer, pages=1)
    delivered = queues.deliver(queue_url, visiting)

    # Then the continuation units paged on where the last stored page ended, a page each, the
    # first run's (overtaken by the second) paging nothing, until every tenant was sent
    status = consumer.module.sweeps.status("reverify")
    assert (status["sweep_id"], status["status"], status["sent"]) == (first["sweep_id"], "paged", TENANTS)
    assert visiting.read == len(visiting.continuations) - 1 == TENANTS // PAGE_SIZE - 2 + 1  # and an empty last page
    # the dead run's 7 batches, and the units SQS delivered twice
    assert delivered == TENANTS + 70 + 20 + visiting.handed

    # and every tenant was verified exactly once, and the sweep counted each once
    assert verified == Counter({tenant_id: 1 for tenant_id in fleet})
    assert (status["visited"], status["finished"]) == (TENANTS, True)
    assert status["totals"] == {"verified": TENANTS}
    assert queues.depth("ReverifyQueue") == queues.depth("SweepDeadLetterQueue") == 0
    probe = random.Random(7).sample(fleet, 5)
    assert all(TenantConfig.get(t, consistent_read=True).last_verified_at for t in probe)
    assert {SweepVisit.get(t, "reverify").sweep_id for t in probe} == {first["sweep_id"]}


def test_a_sweep_cut_off_finishes_through_its_continuation_units_before_the_next_schedule(monkeypatch, queues, capsys):
    """Catches a sweep whose paging waits for the next scheduled run once a run is cut off,
    a continuation unit delivered twice paging twice, and SweepContinuations not counting the
    units sent (README, Scheduled jobs)."""
    tenants = global_tenants(monkeypatch, 3 * PAGE_SIZE + 50)
    consumer = Function("verify")
    verified = counting_verifies(consumer)
    queue_url = queues.urls["ReverifyQueue"]

    # When the schedule's only run is cut off after one page
    run = Function("verify").module.lambda_handler(sample("verify_scheduled"), CutOff(pages=1))
    assert (run["status"], run["sent"]) == ("paging", PAGE_SIZE)
    # (its continuation unit, among the tenants' units, arrives twice: SQS delivers at least once)
    continuations = [m for m in waiting(queues, queue_url) if "tenant_id" not in json.loads(m["Body"])]
    assert [json.loads(m["Body"]) for m in continuations] == [
        {"sweep": "reverify", "sweep_id": run["sweep_id"], "page": 1}
    ]
    queues.client.send_message(QueueUrl=queue_url, MessageBody=continuations[0]["Body"])

    # and the event source hands the units over, each invocation's time running out after a page
    visiting = PageBudget(consumer, pages=1)
    queues.deliver(queue_url, visiting)

    # Then the sweep is paged and every tenant visited once, with no other scheduled run
    status = consumer.module.sweeps.status("reverify")
    assert (status["sweep_id"], status["status"], status["finished"]) == (run["sweep_id"], "paged", True)
    assert (status["sent"], status["visited"]) == (len(tenants), len(tenants))
    assert verified == Counter({tenant_id: 1 for tenant_id in tenants})
    # the first run's continuation and its copy (paging nothing), then one per page until the last
    assert (len(visiting.continuations), visiting.read) == (4, 3)
    assert sum(emf_metrics(capsys.readouterr().out)["SweepContinuations"]) == 3  # the copy was not sent by us
    assert queues.depth("ReverifyQueue") == queues.depth("SweepDeadLetterQueue") == 0


def waiting(queues, queue_url: str) -> list[dict]:
    """Every message waiting in the queue, left waiting."""
    seen = []
    while batch := queues.client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        seen += batch
    for message in seen:
        queues.client.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return seen


def test_a_unit_of_an_older_sweep_does_nothing_once_a_later_one_visited(monkeypatch, queues):
    (tenant_id,) = global_tenants(monkeypatch, 1)
    consumer = Function("verify")
    verified = counting_verifies(consumer)
    old_unit = json.dumps(
        {"sweep": "reverify", "sweep_id": "2026-01-01T00:00:00.000Z~00000000", "tenant_id": tenant_id}
    )
    Function("verify")(sample("verify_scheduled"), timeout_ms=JOB_TIMEOUT_MS)
    queues.deliver(queues.urls["ReverifyQueue"], consumer)

    queues.client.send_message(QueueUrl=queues.urls["ReverifyQueue"], MessageBody=old_unit)
    queues.deliver(queues.urls["ReverifyQueue"], consumer)

    assert verified[tenant_id] == 1


def test_the_sample_units_are_visited_once_as_lambda_delivers_them(monkeypatch, queues):
    # Given acme on the global wrap
    global_tenants(monkeypatch, 0)
    assert Function("configure").http(http_sample("configure_put_global", "acme"))[0] == 200
    verify = Function("verify")

    # When the sample re-verify batch arrives, twice (SQS delivers at least once)
    answers = [verify(sample("verify_reverify_units")) for _ in range(2)]

    # Then both batches succeed, and acme was verified once, by that sweep
    assert answers == [{"batchItemFailures": []}] * 2
    assert Sweeps.visit_of(REVERIFY, "acme") == {
        "sweep_id": "2026-11-28T15:00:00.012Z~3f2a9c1e",
        "state": "done",
        "outcome": "verified",
    }
    # and a re-poll unit of a tenant that is not sealed leaves it active
    assert verify(sample("verify_repoll_units")) == {"batchItemFailures": []}
    assert Sweeps.visit_of(REPOLL, "acme")["outcome"] == "active"


def test_a_sweep_emits_the_documented_metrics(monkeypatch, queues, capsys):
    """Catches a sweep metric the README lists (SweepUnitsSent, SweepUnitsVisited,
    SweepUnitsRepeated, ScheduledTenantFailures) no longer emitted, or counting the wrong event."""
    # Given two tenants on the global wrap and one on a provider this deployment lacks
    tenants = global_tenants(monkeypatch, 2)
    monkeypatch.delenv("OPERATOR_KMS_KEY_ARN", raising=False)
    active_config("fleet-unavailable", provider="operator_kms_aws").save()
    queue_url = queues.urls["ReverifyQueue"]
    capsys.readouterr()

    # When the schedule sends the sweep's units, they are visited, and SQS delivers some twice
    Function("verify")(sample("verify_scheduled"), timeout_ms=JOB_TIMEOUT_MS)
    scheduled = emf_metrics(capsys.readouterr().out)
    consumer = Function("verify")
    consumer.module.sweeps.clock = clock = Clock()
    sent_twice(queues, queue_url, batches=1)
    queues.deliver(queue_url, consumer)
    visited = emf_metrics(capsys.readouterr().out)

    # Then the run counted the units it sent, each tenant one visit, the visit that failed
    # one failure, and every unit that came again a repeat
    assert scheduled["SweepUnitsSent"] == [3.0]
    assert sum(visited["SweepUnitsVisited"]) == 3.0
    assert sum(visited["ScheduledTenantFailures"]) == 1.0
    assert sum(visited["SweepUnitsRepeated"]) == 3.0
    assert Sweeps.visit_of(REVERIFY, "fleet-unavailable")["outcome"] == "failed:invalid_request"
    assert {Sweeps.visit_of(REVERIFY, t)["outcome"] for t in tenants} == {"verified"}
    # and each visit's row expires 14 days after its claim (README, Scheduled jobs)
    assert {SweepVisit.get(t, REVERIFY).expires_at for t in tenants} == {int(clock()) + 14 * 86400}


class Died(BaseException):
    """The instance died in the middle of a visit: nothing of ours runs after it."""


def test_a_visit_whose_worker_died_is_taken_by_the_unit_once_the_claim_lapsed(monkeypatch, queues):
    """Catches a dead worker's claim that never lapses (the tenant skipped by that sweep) or
    lapses before the invocation's time is out (two visits at once) (README, Scheduled jobs)."""
    # Given acme on the global wrap, and a worker that dies while visiting it for a sweep
    global_tenants(monkeypatch, 0)
    assert Function("configure").http(http_sample("configure_put_global", "acme"))[0] == 200
    clock = Clock()
    dying = Function("verify")
    dying.module.sweeps.clock = clock

    def die(tenant_id: str, *, actor: str) -> dict:
        raise Died

    dying.service.verify = die
    with pytest.raises(Died):
        dying(sample("verify_reverify_units"), timeout_ms=60_000)
    assert Sweeps.visit_of(REVERIFY, "acme")["state"] == "claimed"

    # When the unit comes back while the dead worker's invocation could still be running
    taker = Function("verify")
    taker.module.sweeps.clock = clock
    verified = counting_verifies(taker)
    clock.advance(60)
    assert taker(sample("verify_reverify_units")) == {"batchItemFailures": []}
    assert verified["acme"] == 0

    # and once that time is out
    clock.advance(2)
    assert taker(sample("verify_reverify_units")) == {"batchItemFailures": []}

    # Then the unit visited acme, once
    assert verified["acme"] == 1
    assert Sweeps.visit_of(REVERIFY, "acme")["outcome"] == "verified"


def test_rewrap_sweep_units_and_job_units_are_told_apart_in_lambdas_batches(monkeypatch, queues):
    """Catches RewrapFunction taking a sweep's unit for a job's (or the reverse), a sweep unit
    of the rewrap visiting twice, and a scheduled rewrap that is not a job (README, Scheduled jobs)."""
    # Given acme with a record under its retired version 1
    global_tenants(monkeypatch, 0)
    records_on_a_retired_version("acme", 1)
    rewrap = Function("rewrap")

    # When the sample batch of rewrap sweep units arrives, twice (SQS delivers at least once)
    answers = [rewrap(sample("rewrap_sweep_units")) for _ in range(2)]

    # Then acme's rewrap job was started once, by the schedule, and its versions checked once
    assert answers == [{"batchItemFailures": []}] * 2
    assert Sweeps.visit_of(REWRAP, "acme")["outcome"] == "job_started"
    assert Sweeps.visit_of(REWRAP_KEYS, "acme")["outcome"] == "checked,current"
    (message,) = queues.client.receive_message(QueueUrl=queues.urls["RewrapJobQueue"]).get("Messages", [])
    job = json.loads(message["Body"])

    # When the job's unit comes in one batch with a sweep unit of a later sweep (what a batch
    # of either queue could hold), each is told apart
    arn = "arn:aws:sqs:us-east-1:123456789012:RewrapJobQueue"
    batch = lambda_event([message], arn, "us-east-1")
    later = {"sweep": REWRAP, "sweep_id": "2099-01-01T00:00:00.000Z~00000000", "tenant_id": "acme"}
    batch["Records"].append({**batch["Records"][0], "messageId": "later-sweep", "body": json.dumps(later)})
    assert rewrap(batch) == {"batchItemFailures": []}

    # Then the job moved the record, and the later sweep found its job finished and nothing pending
    status, view = rewrap.http(rewrap_job_get("acme", job["job_id"]))
    assert (status, view["status"], view["migrated"], view["remaining"]) == (200, "succeeded", 1, 0)
    assert Sweeps.visit_of(REWRAP, "acme") == {
        "sweep_id": later["sweep_id"],
        "state": "done",
        "outcome": "nothing_pending",
    }
