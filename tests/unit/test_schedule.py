"""Scheduled runs stop in time: before the invocation's end, and the minute re-poll within its budget."""

from __future__ import annotations

from dataclasses import dataclass

from tenant_kms.schedule import REPOLL_BUDGET_MS, deadline, is_repoll, is_scheduled


@dataclass
class Context:
    remaining_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_a_run_keeps_a_safety_margin_of_its_invocation():
    context = Context(300_000)
    stop = deadline(context)
    context.remaining_ms = 30_001
    assert not stop()
    context.remaining_ms = 29_999
    assert stop()


def test_the_repoll_stops_within_its_budget_whatever_the_function_timeout():
    context = Context(300_000)
    stop = deadline(context, REPOLL_BUDGET_MS)
    context.remaining_ms = 300_000 - REPOLL_BUDGET_MS + 1
    assert not stop()
    context.remaining_ms = 300_000 - REPOLL_BUDGET_MS - 1
    assert stop()
    assert REPOLL_BUDGET_MS < 60_000  # done before the next minute's run


def test_the_repoll_input_is_told_from_the_scheduled_event():
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    assert is_scheduled(scheduled) and not is_repoll(scheduled)
    assert is_repoll({"job": "repoll_sealed"}) and not is_scheduled({"job": "repoll_sealed"})
