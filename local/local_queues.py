"""The sweeps' SQS queues as template.yaml declares them, and Lambda's SQS event source
mapping played locally: the same queues, the same event Lambda sends, the same handling of a
partial batch response.

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
from collections.abc import Callable
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
    queue_arn = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    batches = delivered = 0
    while batches < max_batches:
        messages = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=batch_size, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return delivered
        batches += 1
        delivered += len(messages)
        try:
            failed = failed_messages(messages, invoke(lambda_event(messages, queue_arn, region)))
        except Exception:  # the function raised: Lambda retries the whole batch
            failed = {message["MessageId"] for message in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)],
            )
        for message in messages:
            if message["MessageId"] in failed:
                client.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
    raise RuntimeError(f"{queue_url} still held messages after {max_batches} batches")
