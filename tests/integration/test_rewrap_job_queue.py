"""Rewrap jobs through the job queue: moto's SQS, and the event Lambda's SQS event source
mapping sends (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html): the worker sends
the next unit itself, delayed by the rate's interval, and reports failed units one by one."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest
from local_queues import create_queues, failed_messages, lambda_event
from support import Clock, Function, http_sample, purge_job, records_on_a_retired_version, rewrap_job_get

from tenant_kms.jobs import STALLED_SECONDS

BATCH = 4


@pytest.fixture
def job_queue(moto_server, monkeypatch):
    """The job queue with its dead-letter queue, as template.yaml declares them."""
    sqs = boto3.client("sqs", endpoint_url=moto_server)
    url = create_queues(sqs, uuid.uuid4().hex[:8])["RewrapJobQueue"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_server)
    monkeypatch.setenv("JOB_QUEUE_URL", url)
    monkeypatch.setenv("REWRAP_BATCH_RECORDS", str(BATCH))
    return sqs, url, arn


def poll(sqs, url: str, arn: str, worker: Function) -> tuple[list[dict], dict]:
    """One poll of the event source mapping: receive, invoke, delete what succeeded."""
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    ).get("Messages", [])
    if not messages:
        return [], {"batchItemFailures": []}
    answer = worker(lambda_event(messages, arn, "us-east-1"))
    failed = failed_messages(messages, answer)
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return messages, answer


def queued(sqs, url: str) -> dict[str, int]:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {name.removeprefix("ApproximateNumberOfMessages") or "Visible": int(found[name]) for name in names}


def test_a_job_runs_to_its_end_through_the_queue_one_message_per_batch(tenant_id, job_queue):
    sqs, url, arn = job_queue
    values = records_on_a_retired_version(tenant_id, 10)
    worker = Function("rewrap")

    # When the rewrap is started: the first unit is queued
    status, job = Function("rewrap").http(http_sample("rewrap_post", tenant_id))
    assert status == 202 and job["migrated"] == 0
    assert queued(sqs, url) == {"Visible": 1, "NotVisible": 0, "Delayed": 0}

    # Then the mapping's polls advance it one batch per message until it is done
    delivered = []
    for _ in range(10):
        messages, answer = poll(sqs, url, arn, worker)
        if not messages:
            break
        assert answer == {"batchItemFailures": []}
        delivered += [json.loads(m["Body"]) for m in messages]
    assert delivered == [{"tenant_id": tenant_id, "job_id": job["job_id"]}] * 3  # batches of 4, 4, 2
    assert queued(sqs, url) == {"Visible": 0, "NotVisible": 0, "Delayed": 0}
    status, view = Function("rewrap").http(rewrap_job_get(tenant_id, job["job_id"]))
    assert (status, view["status"], view["migrated"], view["remaining"]) == (200, "succeeded", len(values), 0)


def test_the_next_unit_waits_the_rate_interval_in_the_queue(tenant_id, job_queue, monkeypatch):
    sqs, url, arn = job_queue
    monkeypatch.setenv("REWRAP_BATCH_INTERVAL_SECONDS", "5")
    records_on_a_retired_version(tenant_id, 6)
    worker = Function("rewrap")
    Function("rewrap").http(http_sample("rewrap_post", tenant_id))

    messages, answer = poll(sqs, url, arn, worker)
    assert len(messages) == 1 and answer == {"batchItemFailures": []}

    # The worker sent the next unit with DelaySeconds = the interval: SQS holds it back
    assert queued(sqs, url) == {"Visible": 0, "NotVisible": 0, "Delayed": 1}
    assert poll(sqs, url, arn, worker)[0] == []


def test_a_unit_that_fails_is_reported_alone_and_comes_back(tenant_id, job_queue):
    sqs, url, arn = job_queue
    records_on_a_retired_version(tenant_id, 2)
    worker = Function("rewrap")
    job = Function("rewrap").http(http_sample("rewrap_post", tenant_id))[1]
    bad = sqs.send_message(QueueUrl=url, MessageBody="not a unit")["MessageId"]
    gone = sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"tenant_id": tenant_id, "job_id": "f" * 32}))

    messages, answer = poll(sqs, url, arn, worker)

    # Only the malformed unit failed; the unit of an unknown job is dropped, the job's ran
    assert len(messages) == 3 and {bad, gone["MessageId"]} <= {m["MessageId"] for m in messages}
    assert answer == {"batchItemFailures": [{"itemIdentifier": bad}]}
    assert queued(sqs, url)["NotVisible"] == 1  # back after the visibility timeout, then to the DLQ
    status, view = Function("rewrap").http(rewrap_job_get(tenant_id, job["job_id"]))
    assert (status, view["status"], view["migrated"]) == (200, "succeeded", 2)


def test_a_start_sends_a_new_unit_to_a_job_whose_unit_was_lost(tenant_id, job_queue):
    sqs, url, arn = job_queue
    records_on_a_retired_version(tenant_id, 2)
    clock = Clock(time.time())  # the worker that runs the new unit reads the real clock
    starter = Function("rewrap")
    starter.service.clock = clock
    job = starter.http(http_sample("rewrap_post", tenant_id))[1]

    # Given its first unit lost (gone to the dead-letter queue, say)
    (lost,) = sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=lost["ReceiptHandle"])

    # When the tenant's admin starts it again while it is not yet stalled: the same job, no unit
    clock.advance(STALLED_SECONDS)
    assert starter.http(http_sample("rewrap_post", tenant_id))[1]["job_id"] == job["job_id"]
    assert queued(sqs, url)["Visible"] == 0

    # and once nobody advanced it for longer: a new unit, which the mapping's poll runs
    clock.advance(1)
    assert starter.http(http_sample("rewrap_post", tenant_id))[1]["job_id"] == job["job_id"]
    messages, answer = poll(sqs, url, arn, Function("rewrap"))
    assert len(messages) == 1 and answer == {"batchItemFailures": []}
    status, view = Function("rewrap").http(rewrap_job_get(tenant_id, job["job_id"]))
    assert (status, view["status"], view["migrated"]) == (200, "succeeded", 2)


def test_an_erasure_sends_its_purge_to_the_job_queue_and_the_mapping_finishes_it(tenant_id, job_queue):
    sqs, url, arn = job_queue
    records_on_a_retired_version(tenant_id, BATCH + 2)  # two batches

    # When the tenant is erased: its keys go, and the purge's first unit is queued
    assert Function("erase").http(http_sample("erase_delete", tenant_id)) == (204, None)
    assert queued(sqs, url)["Visible"] == 1

    # Then the mapping's polls run the purge to its end, each unit queuing the next
    worker = Function("rewrap")
    polls = []
    while messages := poll(sqs, url, arn, worker)[0]:
        polls.append(len(messages))
    assert polls == [1, 1]
    assert purge_job(tenant_id) is None
    assert Function("configure").http(http_sample("configure_get", tenant_id))[1]["status"] == "unconfigured"


def test_erasing_again_sends_a_new_unit_to_a_purge_whose_unit_was_lost(tenant_id, job_queue):
    """Catches DELETE /tenants/{tenant_id} again leaving a stalled purge stalled (README: it
    restarts a stalled purge), or queuing a second unit for a purge that is not stalled."""
    sqs, url, arn = job_queue
    records_on_a_retired_version(tenant_id, 2)
    clock = Clock(time.time())  # the worker that runs the new unit reads the real clock
    eraser = Function("erase")
    eraser.service.clock = clock
    assert eraser.http(http_sample("erase_delete", tenant_id)) == (204, None)
    job = purge_job(tenant_id)

    # Given its first unit lost (gone to the dead-letter queue, say)
    (lost,) = sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=lost["ReceiptHandle"])

    # When the tenant is erased again while the purge is not yet stalled: the same purge, no unit
    clock.advance(STALLED_SECONDS)
    assert eraser.http(http_sample("erase_delete", tenant_id)) == (204, None)
    assert purge_job(tenant_id) == job and queued(sqs, url)["Visible"] == 0

    # and once nobody advanced it for longer: a new unit, which the mapping's poll runs to the end
    clock.advance(1)
    assert eraser.http(http_sample("erase_delete", tenant_id)) == (204, None)
    assert purge_job(tenant_id) == job
    polls = []
    while messages := poll(sqs, url, arn, Function("rewrap"))[0]:
        polls.append(len(messages))
    assert polls == [1]
    assert purge_job(tenant_id) is None
    assert Function("configure").http(http_sample("configure_get", tenant_id))[1]["status"] == "unconfigured"
