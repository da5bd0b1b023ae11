"""The local event source settles a partial batch response as Lambda does
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html)."""

from __future__ import annotations

import pytest
from local_queues import failed_messages

BATCH = [{"MessageId": "m1"}, {"MessageId": "m2"}, {"MessageId": "m3"}]


@pytest.mark.parametrize("answer", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}])
def test_no_failure_reported_settles_the_whole_batch(answer):
    assert failed_messages(BATCH, answer) == set()


def test_the_messages_named_stay():
    assert failed_messages(BATCH, {"batchItemFailures": [{"itemIdentifier": "m2"}]}) == {"m2"}


@pytest.mark.parametrize(
    "item",
    [{"itemIdentifier": ""}, {"itemIdentifier": None}, {"messageId": "m2"}, {"itemIdentifier": "m9"}, "m2"],
)
def test_a_malformed_or_unknown_identifier_fails_the_whole_batch(item):
    answer = {"batchItemFailures": [{"itemIdentifier": "m1"}, item]}
    assert failed_messages(BATCH, answer) == {"m1", "m2", "m3"}
