"""Our own tables' faults, in one place: which DynamoDB answers are transient, how long to
back off before trying again, and the ``Unavailable`` error once they persist.

Every call the models and transactions make goes through ``StorageConnection.dispatch``,
so reads, conditional writes, transactions and batch reads and writes all retry the same way, and a
refusal the service must act on (a failed condition) is passed on untouched. botocore's
own retries are off for DynamoDB: one policy, with an injectable sleep, and attempts that
add up to what the caller waited for, not attempts times attempts.

Our own queues' client (``queue_client``) is built here too, under the same deadline.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from pynamodb.connection import Connection

from kms_wrapping import deadline
from tenant_kms.errors import Unavailable

# Error codes DynamoDB answers when it could not do the request now; nothing was applied.
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TransactionInProgressException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
# TransactWriteItems cancellation reasons that are capacity or contention, not a verdict on
# the data. ConditionalCheckFailed is a real conflict; ValidationError and
# ItemCollectionSizeLimitExceeded are refusals.
TRANSIENT_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict"})
BATCH_WRITE, BATCH_GET, TRANSACT_WRITE = "BatchWriteItem", "BatchGetItem", "TransactWriteItems"
RETRY_AFTER_SECONDS = 1


@dataclass
class Backoff:
    """Exponential backoff with equal jitter: the n-th delay lies in [b/2, b] for
    b = min(cap, base * 2**(n-1)), so delays grow while no two callers wait in step."""

    attempts: int = 5
    base_seconds: float = 0.1
    cap_seconds: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = field(default_factory=lambda: random.SystemRandom().random)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        return ceiling / 2 + self.random() * ceiling / 2

    def pause(self, attempt: int) -> None:
        self.sleep(self.delay(attempt))


def transient(error: Exception) -> str | None:
    """Why ``error`` is worth another attempt (a short code), or None for a real answer."""
    if isinstance(error, BotoConnectionError | HTTPClientError):
        return type(error).__name__
    if not isinstance(error, ClientError):
        return None
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "TransactionCanceledException":
        reasons = {r.code for r in getattr(error, "cancellation_reasons", []) if r is not None}
        return "/".join(sorted(reasons)) if reasons and reasons <= TRANSIENT_REASONS else None
    if code in TRANSIENT_CODES or status >= 500 or status == 429:
        return code or f"HTTP {status}"
    return None


class StorageConnection(Connection):
    """A pynamodb connection that retries transient answers with backoff, finishes batch
    writes DynamoDB left partly unprocessed, and raises ``Unavailable`` when they persist."""

    def __init__(self, region: str, backoff: Backoff, **kwargs: Any) -> None:
        super().__init__(region=region, max_retry_attempts=0, **kwargs)  # no botocore retries on top
        self.backoff = backoff

    @property
    def client(self) -> Any:
        client = super().client
        if not getattr(client, "_tenant_kms_deadline", False):
            client._tenant_kms_deadline = True
            deadline.bounded_by_deadline(client)
        return client

    def dispatch(self, operation_name: str, operation_kwargs: dict) -> dict:
        fault = "no answer"
        found: dict[str, list] = {}  # what a batch read's earlier attempts returned
        if operation_name == TRANSACT_WRITE and not operation_kwargs.get("ClientRequestToken"):
            # One token, drawn before the first attempt and kept by every retry: a transaction
            # that landed but lost its answer then answers as landed instead of failing its own
            # conditions. botocore draws one per call and keeps it only by writing into our dict.
            operation_kwargs = {**operation_kwargs, "ClientRequestToken": str(uuid.uuid4())}
        for attempt in range(1, self.backoff.attempts + 1):
            if attempt > 1:
                pause = self.backoff.delay(attempt - 1)
                if not deadline.left_after(pause):
                    # The request's budget ends before another try could: stop now, nothing applied.
                    raise self._unavailable(operation_name, f"{fault}; the request's time budget is spent")
                self.backoff.sleep(pause)
            try:
                data = super().dispatch(operation_name, operation_kwargs)
            except deadline.DeadlineExceeded:
                raise self._unavailable(operation_name, f"{fault}; the request's time budget is spent") from None
            except (ClientError, BotoConnectionError, HTTPClientError) as error:
                fault = transient(error)
                if fault is None:
                    raise
                continue
            if operation_name == BATCH_GET:
                for table, items in (data.get("Responses") or {}).items():
                    found.setdefault(table, []).extend(items)
                data = {**data, "Responses": found}
                unprocessed = data.get("UnprocessedKeys")
            else:
                unprocessed = (data or {}).get("UnprocessedItems") if operation_name == BATCH_WRITE else None
            if not unprocessed:
                return data
            # The items DynamoDB did write (or read) are kept; only the rest is sent again.
            left = (items["Keys"] if operation_name == BATCH_GET else items for items in unprocessed.values())
            fault = f"{sum(len(items) for items in left)} unprocessed items"
            operation_kwargs = {**operation_kwargs, "RequestItems": unprocessed}
        raise self._unavailable(operation_name, f"{fault} after {self.backoff.attempts} attempts")

    @staticmethod
    def _unavailable(operation_name: str, why: str) -> Unavailable:
        return Unavailable(
            f"the tenant tables are busy ({operation_name}: {why}); retry in {RETRY_AFTER_SECONDS} s",
            RETRY_AFTER_SECONDS,
        )


def queue_client(region: str) -> Any:
    """An SQS client for our own queues (job and sweep units). A unit sent while a route
    answers keeps to the route's deadline, like every other call it makes."""
    import boto3  # only a function that sends units pays for it

    return deadline.bounded_by_deadline(boto3.session.Session().client("sqs", region_name=region))
