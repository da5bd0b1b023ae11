"""Scheduled runs (EventBridge): work through tenants until the invocation's time runs out.
Both scheduled jobs are resumable, so what is left is picked up by the next run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tenant_kms.errors import TenantKmsError
from tenant_kms.observability import count, logger

# Leave this much of the invocation for the last tenant's writes and the metrics flush.
SAFETY_MARGIN_MS = 30_000


def is_scheduled(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def deadline(context: Any) -> Callable[[], bool]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return lambda: False
    # A short invocation (an API call) keeps a quarter of its time rather than 30 s.
    margin = min(SAFETY_MARGIN_MS, remaining() // 4)
    return lambda: remaining() < margin


def run_until_deadline(tenants: Iterable[str], job: Callable[[str], dict], context: Any) -> dict[str, Any]:
    stop = deadline(context)
    done, failed, results = 0, [], []
    for tenant_id in tenants:
        if stop():
            break
        try:
            results.append({"tenant_id": tenant_id, **job(tenant_id)})
            done += 1
        except TenantKmsError as error:
            failed.append({"tenant_id": tenant_id, "code": error.code, "message": error.message})
            count("ScheduledTenantFailures")
            logger.warning("scheduled job failed for tenant", tenant_id=tenant_id, code=error.code)
    return {"tenants_done": done, "failed": failed, "results": results}
