"""Scheduled runs (EventBridge) and the events that start them, and the deadline every
scheduled or queued run keeps: it stops before the invocation's time runs out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Leave this much of the invocation for the last tenant's writes and the metrics flush.
SAFETY_MARGIN_MS = 30_000
# The re-poll of sealed tenants runs every minute: each run ends before the next starts.
REPOLL_JOB = "repoll_sealed"
REPOLL_BUDGET_MS = 45_000


def is_scheduled(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def is_sqs_batch(event: dict[str, Any]) -> bool:
    """Lambda's SQS event source: a batch of records from a queue (sweep or job units)."""
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and all(r.get("eventSource") == "aws:sqs" for r in records)


def is_repoll(event: dict[str, Any]) -> bool:
    """The re-poll's schedule sends its own input (template.yaml) instead of the scheduled event."""
    return event.get("job") == REPOLL_JOB


def deadline(context: Any, budget_ms: int | None = None) -> Callable[[], bool]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return lambda: False
    # A short invocation (an API call) keeps a quarter of its time rather than 30 s.
    margin = min(SAFETY_MARGIN_MS, remaining() // 4)
    if budget_ms is not None:
        margin = max(margin, remaining() - budget_ms)
    return lambda: remaining() < margin
