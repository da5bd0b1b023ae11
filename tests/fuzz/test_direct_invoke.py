"""Any payload sent to the direct-invoke functions is answered with a result or an error
envelope carrying a 4xx code: never an internal error or a traceback, and a refusal leaves
every table byte-for-byte as it was."""

from __future__ import annotations

import functools

import strategies
from hypothesis import event, given
from support import Function, structured_logs

# What a caller can get back for bad input or a state it cannot change; never a 5xx code.
REFUSALS = {"invalid_request", "not_found", "conflict", "sealed"}


@functools.cache
def invoked(name: str) -> Function:
    return Function(name)


def answer_is_clear(watch, function: Function, payload: object) -> None:
    with structured_logs() as logs:
        answer = function(payload)
    watch.logs_are_clean(logs.getvalue())
    assert isinstance(answer, dict), answer
    code = answer["error"]["code"] if "error" in answer else None
    if code:
        assert code in REFUSALS and answer["error"]["message"], answer
    event(code or "answered")  # --hypothesis-show-statistics
    watch.tables_kept(code)


@given(payload=strategies.unwrap_payloads)
def test_any_unwrap_payload(watch, payload):
    answer_is_clear(watch, invoked("unwrap"), payload)


@given(payload=strategies.tenant_data_payloads)
def test_any_tenant_data_payload(watch, payload):
    answer_is_clear(watch, invoked("tenant_data"), payload)
