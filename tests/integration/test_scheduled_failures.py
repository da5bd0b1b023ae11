"""A scheduled run is an asynchronous invocation: one that still fails after Lambda's retries
lands, with its event, in the dead-letter queue template.yaml gives the function (on moto's
SQS; Lambda's retries and dead-letter message are played by local/async_invoke.py), rather
than being dropped with nothing to show but a log line."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from deployment import own_tables
from support import sample

SCHEDULES = [("verify", "verify_scheduled"), ("verify", "verify_repoll_sealed"), ("rewrap", "rewrap_scheduled")]


def dead_letters(queues) -> list[dict]:
    found = []
    while batch := queues.client.receive_message(
        QueueUrl=queues.urls["ScheduledRunDeadLetterQueue"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        found += batch
        for message in batch:
            queues.client.delete_message(
                QueueUrl=queues.urls["ScheduledRunDeadLetterQueue"], ReceiptHandle=message["ReceiptHandle"]
            )
    return found


@pytest.mark.parametrize(("function", "sample_name"), SCHEDULES)
def test_a_scheduled_run_that_keeps_failing_lands_in_the_dead_letter_queue(monkeypatch, queues, function, sample_name):
    # Given a deployment whose tenant tables are gone: every attempt of the run fails
    names = own_tables(monkeypatch)
    dynamodb = boto3.client("dynamodb")
    for table in ("TenantConfigTable", "KeyVersionTable"):
        dynamodb.delete_table(TableName=names[table])
    event = sample(sample_name)

    # When the schedule invokes the function
    attempts, answer = queues.schedule(function, event)

    # Then Lambda tried three times, and the event waits in the dead-letter queue with the error
    assert (attempts, answer) == (3, None)
    (message,) = dead_letters(queues)
    assert json.loads(message["Body"]) == event
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert attributes["ErrorCode"] == "200" and "non-existent table" in attributes["ErrorMessage"]
    assert uuid.UUID(attributes["RequestID"])


def test_a_scheduled_run_that_succeeds_leaves_the_dead_letter_queue_empty(monkeypatch, queues):
    own_tables(monkeypatch)
    attempts, answer = queues.schedule("verify", sample("verify_scheduled"))
    assert attempts == 1 and answer is not None
    assert dead_letters(queues) == []
