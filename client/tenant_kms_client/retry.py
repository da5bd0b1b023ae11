"""Bounded retries of the answers the service marks as retryable (503 ``provider_unavailable``
and ``unavailable``: nothing was changed) and of Lambda's throttling."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenant_kms_client.errors import TenantKmsError

T = TypeVar("T")


@dataclass
class Retry:
    """``attempts`` calls at most; between them, exponential backoff with full jitter from
    ``base_delay`` up to ``max_delay`` seconds, never shorter than the service's Retry-After
    (itself capped at ``max_delay``). ``sleep`` and ``random`` are injectable."""

    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = field(default=random.random)

    def delay(self, attempt: int, error: TenantKmsError) -> float:
        backoff = min(self.max_delay, self.base_delay * 2**attempt) * self.random()
        asked = min(self.max_delay, float(error.retry_after or 0))
        return max(backoff, asked)

    def run(self, call: Callable[[], T], retryable: Callable[[TenantKmsError], bool]) -> T:
        for attempt in range(self.attempts):
            try:
                return call()
            except TenantKmsError as error:
                if attempt + 1 >= self.attempts or not retryable(error):
                    raise
                self.sleep(self.delay(attempt, error))
        raise AssertionError("unreachable")  # attempts >= 1


NO_RETRY = Retry(attempts=1)
