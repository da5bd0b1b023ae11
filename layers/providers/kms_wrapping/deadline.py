"""How long the request being served may still wait on a provider or a table.

A request runs under one ``Deadline`` (an admin route: its route budget; a direct invoke:
the Lambda context's remaining time). Every provider call asks ``remaining()`` and gives
its SDK no more than that, whatever the SDK's own timeouts and retry counts say; a call that
would start with nothing left raises ``DeadlineExceeded`` instead. Outside a request (a
test calling an adapter, a scheduled job) there is no deadline and the SDK settings apply.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from kms_wrapping.base import ProviderUnavailable

# What a request keeps of the function's own remaining time to build and send its answer.
ANSWER_MARGIN_SECONDS = 0.5
# botocore's standard retry mode sleeps up to min(2**(n-1), 20) s after a throttled attempt n
# (less after other failures), raised to the answer's x-amz-retry-after (ms) by at most 5 s more.
_BOTOCORE_MAX_BACKOFF = 20
_BOTOCORE_RETRY_AFTER_MAX_ADDITIONAL = 5


class DeadlineExceeded(ProviderUnavailable):
    """The request's budget is spent: nothing more is asked of the provider (or the tables)."""


@dataclass(frozen=True)
class Deadline:
    at: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def of_lambda(cls, context: Any, clock: Callable[[], float] = time.monotonic) -> Deadline | None:
        """Before Lambda stops the function (less a margin to answer); None without a Lambda context."""
        left = lambda_time_left(context)
        return None if left is None else cls(at=clock() + left, clock=clock)

    def remaining(self) -> float:
        return self.at - self.clock()

    def grant(self, seconds: float, what: str) -> float:
        """``seconds``, or what is left if that is less; raises when nothing is left."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded(f"{what}: the request's time budget is spent")
        return min(seconds, left)


def lambda_time_left(context: Any) -> float | None:
    """Seconds the function may still run, less the margin to answer (None: no Lambda context)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 - ANSWER_MARGIN_SECONDS if callable(remaining) else None


_current: ContextVar[Deadline | None] = ContextVar("kms_wrapping_deadline", default=None)


def current() -> Deadline | None:
    return _current.get()


@contextlib.contextmanager
def running_until(deadline: Deadline | None) -> Iterator[Deadline | None]:
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def grant(seconds: float, what: str) -> float:
    """``seconds`` bounded by the current request's remaining budget (unbounded outside one)."""
    deadline = current()
    return seconds if deadline is None else deadline.grant(seconds, what)


def left_after(seconds: float) -> bool:
    """Whether a pause of ``seconds`` leaves the current request any budget for another try."""
    deadline = current()
    return deadline is None or deadline.remaining() > seconds


def _attempt_budget(request: Any, event_name: str = "", **_: Any) -> None:
    """before-send: no attempt starts past the deadline, and none reads longer than what is left."""
    deadline = current()
    if deadline is None:
        return
    context = request.context
    configured = context.get("client_config")
    read = configured.read_timeout if configured is not None else 60
    # botocore's per-request override (httpsession): the pool's connect timeout stays.
    context["read_timeout"] = deadline.grant(read, _operation(event_name))


def _retry_budget(
    attempts: int, caught_exception: Any = None, response: Any = None, event_name: str = "", **_: Any
) -> None:
    """needs-retry (runs before botocore's own handler): a throttled or failed attempt is not
    retried when botocore's longest backoff would leave nothing of the budget."""
    deadline = current()
    if deadline is None:
        return
    if failed(caught_exception, response) and deadline.remaining() <= longest_backoff(attempts, response):
        raise DeadlineExceeded(
            f"{_operation(event_name)}: no time left in the request's budget for attempt {attempts + 1}"
        )


def longest_backoff(attempts: int, response: Any) -> float:
    """The longest botocore may sleep before attempt ``attempts + 1``."""
    longest = min(2 ** (attempts - 1), _BOTOCORE_MAX_BACKOFF)
    try:
        retry_after = int(response[0].headers["x-amz-retry-after"]) / 1000
    except (TypeError, KeyError, ValueError):  # no answer, no header, or one botocore ignores too
        return longest
    return max(longest, min(retry_after, longest + _BOTOCORE_RETRY_AFTER_MAX_ADDITIONAL))


def failed(caught_exception: Any, response: Any) -> bool:
    """An attempt botocore may retry: no answer, a 5xx or 429, or a throttling error."""
    if caught_exception is not None:
        return True
    if response is None:
        return False
    status = response[0].status_code
    code = str((response[1] or {}).get("Error", {}).get("Code", ""))
    throttled = "Throttl" in code or code in ("RequestLimitExceeded", "LimitExceededException")
    return status >= 500 or status == 429 or throttled


def _operation(event_name: str) -> str:
    """The call an event is about: botocore names them <event>.<service>.<operation>."""
    return event_name.rsplit(".", 1)[-1] or "AWS call"


def bounded_by_deadline(client: Any) -> Any:
    """A botocore client whose calls keep to the current request's deadline (see module doc)."""
    events = client.meta.events
    events.register_first("before-send", _attempt_budget, unique_id="tenant-kms-deadline-send")
    events.register_first("needs-retry", _retry_budget, unique_id="tenant-kms-deadline-retry")
    return client
