"""The job and sweep queues as template.yaml declares them, and Lambda's SQS event source
mapping played locally: the same queues, the same event Lambda sends, the same handling of a
partial batch response. ``EventSource`` is what `make run` polls the queues with; ``deliver``
drains a queue at once for a test.

Lambda's event source (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html) receives up
to BatchSize messages, invokes the function with ``{"Records": [...]}`` (each record:
messageId, receiptHandle, body, attributes, messageAttributes, md5OfBody, eventSource
"aws:sqs", eventSourceARN, awsRegion), deletes the messages that succeeded, and leaves the
ones named in ``batchItemFailures`` (or all, if the function raised) to come back after the
visibility timeout; the queue's redrive policy moves a message to its dead-letter queue after
maxReceiveCount receives.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local_tables import load_template

# Logical id of each queue -> the setting naming it, on the function that sends to it.
QUEUE_SETTINGS = {
    "ReverifyQueue": "REVERIFY_QUEUE_URL",
    "RepollSealedQueue": "REPOLL_QUEUE_URL",
    "RewrapSweepQueue": "REWRAP_SWEEP_QUEUE_URL",
    "RewrapJobQueue": "JOB_QUEUE_URL",
}
# The queue properties of template.yaml that change how SQS holds and hands out messages.
QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
)
# What Lambda passes on of a message's system attributes.
LAMBDA_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
)


def queue_definitions(template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    template = template or load_template()
    return {
        logical_id: resource.get("Properties") or {}
        for logical_id, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource["Type"] == "AWS::SQS::Queue"
    }


def create_queues(client: Any, suffix: str) -> dict[str, str]:
    """Every queue of the template (dead-letter queues first), named ``<logical id>-<suffix>``;
    logical id -> queue URL."""
    definitions = queue_definitions()
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    for logical_id in sorted(definitions, key=lambda name: "RedrivePolicy" in definitions[name]):
        props = definitions[logical_id]
        attributes = {name: str(props[name]) for name in QUEUE_ATTRIBUTES if name in props}
        redrive = props.get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"]
            target = target.split(".")[0] if isinstance(target, str) else target[0]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arns[target], "maxReceiveCount": str(redrive["maxReceiveCount"])}
            )
        url = client.create_queue(QueueName=f"{logical_id}-{suffix}", Attributes=attributes)["QueueUrl"]
        urls[logical_id] = url
        arns[logical_id] = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    return urls


def lambda_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source sends for these received messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    name: message["Attributes"][name]
                    for name in LAMBDA_ATTRIBUTES
                    if name in message.get("Attributes", {})
                },
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def failed_messages(messages: list[dict[str, Any]], answer: Any) -> set[str]:
    """The messages Lambda leaves on the queue after this partial batch response
    (FunctionResponseTypes: ReportBatchItemFailures). No answer, or an empty or null
    ``batchItemFailures``: none. An item whose ``itemIdentifier`` is missing, null, empty or
    not a message of the batch makes Lambda treat the whole batch as failed."""
    batch = {message["MessageId"] for message in messages}
    items = (answer or {}).get("batchItemFailures") or []
    named = [item.get("itemIdentifier") if isinstance(item, dict) else None for item in items]
    if any(not isinstance(name, str) or name not in batch for name in named):
        return batch
    return set(named)


def hand_over(
    client: Any, queue_url: str, queue_arn: str, messages: list[dict[str, Any]], invoke: Callable, region: str
) -> set[str]:
    """One invocation with these received messages, as Lambda makes it: the ones that
    succeeded are deleted; the failed ones (answered back, or all if the function failed) are
    left to the queue. Their message ids."""
    try:
        failed = failed_messages(messages, invoke(lambda_event(messages, queue_arn, region)))
    except Exception:  # the function failed: Lambda leaves the whole batch
        failed = {message["MessageId"] for message in messages}
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:
        client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)],
        )
    return failed


def queue_arn_of(client: Any, queue_url: str) -> str:
    return client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def deliver(
    client: Any,
    queue_url: str,
    invoke: Callable[[dict[str, Any]], Any],
    *,
    batch_size: int = 10,
    region: str = "us-east-1",
    max_batches: int = 100_000,
) -> int:
    """Hand the queue's messages to ``invoke`` as Lambda would, until the queue is empty; the
    number of messages handed over. A failed message is made visible again at once (Lambda waits for the
    visibility timeout), so its retries and its move to the dead-letter queue happen here too."""
    queue_arn = queue_arn_of(client, queue_url)
    batches = delivered = 0
    while batches < max_batches:
        messages = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=batch_size, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return delivered
        batches += 1
        delivered += len(messages)
        failed = hand_over(client, queue_url, queue_arn, messages, invoke, region)
        for message in messages:
            if message["MessageId"] in failed:
                client.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
    raise RuntimeError(f"{queue_url} still held messages after {max_batches} batches")


@dataclass(frozen=True)
class Mapping:
    """An SQS event source of a function in template.yaml."""

    function: str
    queue: str
    batch_size: int


def event_source_mappings(template: dict[str, Any] | None = None) -> list[Mapping]:
    template = template or load_template()
    found = []
    for logical_id, resource in template["Resources"].items():
        if not isinstance(resource, dict) or resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in (resource["Properties"].get("Events") or {}).values():
            if event["Type"] == "SQS":
                props = event["Properties"]
                queue = props["Queue"]["Fn::GetAtt"]
                queue = queue.split(".")[0] if isinstance(queue, str) else queue[0]
                found.append(Mapping(logical_id, queue, int(props.get("BatchSize", 10))))
    return found


class EventSource:
    """Lambda's poller for one mapping: long polls the queue, hands each batch to the function
    (``invoke(function, event)``), deletes what succeeded. As with Lambda, a failed message is
    left to the queue: it comes back after the queue's visibility timeout and, after
    maxReceiveCount receives, moves to the dead-letter queue. SQS itself holds a message sent
    with DelaySeconds until it is due. One batch at a time: within any MaximumConcurrency."""

    def __init__(
        self, client: Any, queue_url: str, function: str, invoke: Callable[[str, dict], Any], *, batch_size: int = 10
    ) -> None:
        self.client, self.queue_url, self.function, self.batch_size = client, queue_url, function, batch_size
        self.invoke = invoke
        self.region = client.meta.region_name
        self.queue_arn = queue_arn_of(client, queue_url)

    def poll(self, wait_seconds: int = 0) -> int:
        """One receive (waiting up to ``wait_seconds`` for a message) and its invocation; the
        number of messages handed over."""
        messages = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            AttributeNames=["All"],
            WaitTimeSeconds=wait_seconds,
        ).get("Messages", [])
        if messages:
            hand_over(
                self.client,
                self.queue_url,
                self.queue_arn,
                messages,
                lambda event: self.invoke(self.function, event),
                self.region,
            )
        return len(messages)

    def run(self, stopped: threading.Event, wait_seconds: int = 1) -> None:
        while not stopped.is_set():
            try:
                self.poll(wait_seconds)
            except Exception:  # a poll that failed (the queue's endpoint going away) is tried again
                traceback.print_exc(file=sys.stderr)
                stopped.wait(1)


def event_sources(client: Any, urls: dict[str, str], invoke: Callable[[str, dict], Any]) -> list[EventSource]:
    """A poller for every SQS event source of template.yaml, on these queues."""
    return [
        EventSource(client, urls[m.queue], m.function, invoke, batch_size=m.batch_size) for m in event_source_mappings()
    ]


def start_event_sources(
    client: Any, urls: dict[str, str], invoke: Callable[[str, dict], Any], stopped: threading.Event
) -> list[EventSource]:
    """Every poller, each in a thread of its own until ``stopped``."""
    sources = event_sources(client, urls, invoke)
    for source in sources:
        threading.Thread(target=source.run, args=(stopped,), daemon=True).start()
    return sources


class LocalSqs:
    """moto's SQS server with the template's queues: where `make run` sends and polls the job
    and sweep units. ``host`` 0.0.0.0 lets sam local's containers reach it (host.docker.internal)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        from dynamodb_local import free_port

        self.host, self.port = host, free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server: Any = None
        self.client: Any = None
        self.urls: dict[str, str] = {}

    def start(self) -> LocalSqs:
        import boto3
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self.server.start()
        self.client = boto3.client(
            "sqs",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        self.urls = create_queues(self.client, "local")
        return self

    def settings(self, endpoint: str | None = None) -> dict[str, str]:
        """The functions' queue settings, and the SQS endpoint as they reach it."""
        return {
            "AWS_ENDPOINT_URL_SQS": endpoint or self.endpoint,
            **{setting: self.urls[logical_id] for logical_id, setting in QUEUE_SETTINGS.items()},
        }

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
