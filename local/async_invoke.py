"""Lambda's asynchronous invocation (how an EventBridge schedule invokes a function) played
locally against the function's dead-letter queue as template.yaml declares it.

Lambda (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html)
retries an event whose invocation failed twice (MaximumRetryAttempts, 2 unless the function's
EventInvokeConfig says otherwise), with the same request id, then sends it to the function's
dead-letter queue: the event as the message body, and the message attributes RequestID,
ErrorCode and ErrorMessage (its first kilobyte). Lambda waits a minute, then two, between
attempts; here they follow at once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from local_tables import load_template

DEFAULT_RETRIES = 2


def dead_letter_queue(function_logical_id: str, template: dict[str, Any] | None = None) -> str | None:
    """Logical id of the queue that takes the function's failed asynchronous invocations."""
    properties = (template or load_template())["Resources"][function_logical_id]["Properties"]
    target = (properties.get("DeadLetterQueue") or {}).get("TargetArn")
    if target is None:
        return None
    name = target["Fn::GetAtt"]
    return name.split(".")[0] if isinstance(name, str) else name[0]


def retries(function_logical_id: str, template: dict[str, Any] | None = None) -> int:
    properties = (template or load_template())["Resources"][function_logical_id]["Properties"]
    return (properties.get("EventInvokeConfig") or {}).get("MaximumRetryAttempts", DEFAULT_RETRIES)


def invoke_event(
    client: Any,
    dead_letter_url: str | None,
    invoke: Callable[[dict[str, Any], str], Any],
    event: dict[str, Any],
    *,
    retries: int = DEFAULT_RETRIES,
) -> tuple[int, Any]:
    """Invoke as Lambda does an asynchronous event: ``invoke(event, request_id)`` up to
    ``retries`` + 1 times; (attempts made, the answer of the one that succeeded or None). A
    failed event goes to the dead-letter queue, or is dropped, as Lambda drops it, if there is
    none."""
    request_id = str(uuid.uuid4())
    error: Exception | None = None
    for attempt in range(1, retries + 2):
        try:
            return attempt, invoke(event, request_id)
        except Exception as exc:  # a function error: Lambda retries it, then gives up
            error = exc
    if dead_letter_url is not None:
        client.send_message(
            QueueUrl=dead_letter_url,
            MessageBody=json.dumps(event),
            MessageAttributes={
                "RequestID": {"DataType": "String", "StringValue": request_id},
                # The invoke itself was accepted (200); the function failed.
                "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                "ErrorMessage": {"DataType": "String", "StringValue": f"{type(error).__name__}: {error}"[:1024]},
            },
        )
    return retries + 1, None
