"""Which DynamoDB answers are retried and then become 503 unavailable, and which are real
answers the service acts on (a failed condition is a conflict, never a retry)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from pynamodb.exceptions import CancellationReason, VerboseClientError

from tenant_kms.storage import Backoff, transient


def answer(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetItem")


def cancelled(*codes: str) -> VerboseClientError:
    return VerboseClientError(
        {"Error": {"Code": "TransactionCanceledException"}},
        "TransactWriteItems",
        cancellation_reasons=[None if c == "None" else CancellationReason(code=c) for c in codes],
    )


@pytest.mark.parametrize(
    "error",
    [
        answer("ProvisionedThroughputExceededException"),
        answer("ThrottlingException"),
        answer("RequestLimitExceeded"),
        answer("TransactionInProgressException"),
        answer("InternalServerError", 500),
        answer("", 503),
        cancelled("ThrottlingError", "None"),
        cancelled("ProvisionedThroughputExceeded", "ThrottlingError"),
        cancelled("None", "TransactionConflict"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_capacity_and_contention_are_retried(error):
    assert transient(error)


@pytest.mark.parametrize(
    "error",
    [
        answer("ConditionalCheckFailedException"),
        answer("ValidationException"),
        answer("ResourceNotFoundException"),
        answer("AccessDeniedException"),
        answer("IdempotentParameterMismatchException"),  # a token reused for another write
        cancelled("ConditionalCheckFailed", "None"),
        cancelled("ConditionalCheckFailed", "ThrottlingError"),  # the condition did fail
        cancelled("ValidationError"),
        cancelled("ItemCollectionSizeLimitExceeded"),
        cancelled(),
        ValueError("not from DynamoDB"),
    ],
)
def test_verdicts_on_the_data_are_not(error):
    assert transient(error) is None


def test_delays_grow_with_jitter_and_stop_at_the_cap():
    draws = iter([0.0, 1.0, 0.5, 0.25, 0.75, 0.5])
    backoff = Backoff(base_seconds=0.1, cap_seconds=0.4, random=lambda: next(draws))
    delays = [backoff.delay(n) for n in range(1, 7)]
    assert delays == pytest.approx([0.05, 0.2, 0.3, 0.25, 0.35, 0.3])
