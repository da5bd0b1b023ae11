"""A deployment of a test's own: fresh tables and queues (as template.yaml declares them)
and the settings that name them, so a scheduled run sees this test's tenants and no other's."""

from __future__ import annotations

import base64
import functools
import os
import uuid
from typing import Any

import boto3
import testenv
from async_invoke import dead_letter_queue, invoke_event, retries
from local_gateway import LocalContext
from local_queues import QUEUE_SETTINGS, create_queues, deliver
from local_tables import create_tables, load_template
from support import JOB_TIMEOUT_MS, Function, sample


def own_tables(monkeypatch) -> dict[str, str]:
    """Fresh tables for every table the session has; functions built afterwards use them."""
    suffix = uuid.uuid4().hex[:6]
    names = {logical_id: f"{name}-{suffix}" for logical_id, name in testenv.TABLES.items()}
    create_tables(boto3.client("dynamodb"), names)
    by_session_name = {name: names[logical_id] for logical_id, name in testenv.TABLES.items()}
    for variable, value in list(os.environ.items()):
        if value in by_session_name:
            monkeypatch.setenv(variable, by_session_name[value])
    return names


def deploy_master_keys(monkeypatch, *keys: bytes) -> None:
    """MASTER_KEY_B64 as a deployment would set it: the current key first."""
    monkeypatch.setenv("MASTER_KEY_B64", ",".join(base64.b64encode(key).decode() for key in keys))


class Queues:
    """The sweeps' queues of a test's own, on the session's moto server."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self._client = None

    @property
    def client(self):
        """Built on first use, with the credentials the test holds by then."""
        if self._client is None:
            self._client = boto3.session.Session().client("sqs")
        return self._client

    def depth(self, logical_id: str) -> int:
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.urls[logical_id],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def deliver(self, queue_url: str, function: Function, *, timeout_ms: int = JOB_TIMEOUT_MS) -> int:
        """Lambda's event source for that queue, with the batch size the template gives it."""
        (logical_id,) = [name for name, url in self.urls.items() if url == queue_url]
        return deliver(
            self.client,
            queue_url,
            lambda event: function(event, timeout_ms=timeout_ms),
            batch_size=batch_size(function.logical_id, logical_id),
        )

    def sweep(self, function: str, event: dict[str, Any], *, timeout_ms: int = JOB_TIMEOUT_MS) -> dict[str, Any]:
        """A scheduled sweep as deployed: the schedule's run sends the units, the queue's event
        source hands them to the function; the sweep's status afterwards."""
        run = Function(function)(event, timeout_ms=timeout_ms)
        consumer = Function(function)
        self.deliver(consumer.module.sweeps.sweeps[run["sweep"]].queue_url, consumer, timeout_ms=timeout_ms)
        return consumer.module.sweeps.status(run["sweep"])

    def schedule(self, function: str, event: dict[str, Any], *, timeout_ms: int = JOB_TIMEOUT_MS) -> tuple[int, Any]:
        """A schedule's invocation as deployed: asynchronous, retried by Lambda, then kept in the
        function's dead-letter queue; (attempts, the answer or None)."""
        instance = Function(function)
        queue = dead_letter_queue(instance.logical_id)

        def invoke(payload: dict[str, Any], request_id: str) -> Any:
            context = LocalContext(instance.logical_id, timeout_ms=timeout_ms, aws_request_id=request_id)
            return instance.module.lambda_handler(payload, context)

        dead_letter_url = self.urls[queue] if queue else None
        return invoke_event(self.client, dead_letter_url, invoke, event, retries=retries(instance.logical_id))

    def rewrap_schedule(
        self, consumer: Function | None = None, *, timeout_ms: int = JOB_TIMEOUT_MS
    ) -> dict[str, dict[str, Any]]:
        """RewrapFunction's schedule as deployed: its run sends both sweeps' units, the sweep
        queue's event source hands them to ``consumer``, the job queue's runs the jobs they
        started; each sweep's status afterwards."""
        Function("rewrap")(sample("rewrap_scheduled"), timeout_ms=timeout_ms)
        consumer = consumer or Function("rewrap")
        self.deliver(self.urls["RewrapSweepQueue"], consumer, timeout_ms=timeout_ms)
        self.deliver(self.urls["RewrapJobQueue"], consumer, timeout_ms=timeout_ms)
        return {name: consumer.module.sweeps.status(name) for name in consumer.module.sweeps.sweeps}


def own_queues(monkeypatch) -> Queues:
    """Fresh queues for every queue of template.yaml; functions built afterwards send to them."""
    urls = create_queues(boto3.client("sqs"), uuid.uuid4().hex[:8])
    for logical_id, setting in QUEUE_SETTINGS.items():
        monkeypatch.setenv(setting, urls[logical_id])
    return Queues(urls)


@functools.cache
def batch_size(function_logical_id: str, queue_logical_id: str) -> int:
    events = load_template()["Resources"][function_logical_id]["Properties"]["Events"]
    (size,) = [
        e["Properties"].get("BatchSize", 10)
        for e in events.values()
        if e["Type"] == "SQS" and e["Properties"]["Queue"] == {"Fn::GetAtt": f"{queue_logical_id}.Arn"}
    ]
    return size
