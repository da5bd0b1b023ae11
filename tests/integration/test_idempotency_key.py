"""POST …/keys with an Idempotency-Key: a retry within 24 h answers the first answer
(status and body) and provisions nothing; the key is the tenant's own."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from faults import DynamoDBFaultProxy, FaultProxy
from local_gateway import LocalContext
from support import Clock, Function, configured_global, http_sample, key_versions, snapshot_tables
from test_sealing import sealed_by_the_active_version
from testenv import TABLES


def keyed(tenant_id: str, key: str | None) -> dict:
    event = http_sample("provision_post", tenant_id)
    if key is not None:
        event["headers"]["idempotency-key"] = key
    return event


def test_the_same_idempotency_key_answers_the_first_answer_and_provisions_once(tenant_id):
    configured_global(tenant_id)
    provision = Function("provision")

    first = provision(keyed(tenant_id, "7f1c9a5e-retry-1"))
    again = Function("provision")(keyed(tenant_id, "7f1c9a5e-retry-1"))
    quoted = provision(keyed(tenant_id, '"7f1c9a5e-retry-1"'))  # the draft's structured-field form

    assert (first["statusCode"], json.loads(first["body"])) == (201, {"version": 2, "status": "active"})
    for replay in (again, quoted):  # status, body byte for byte, content type
        assert (replay["statusCode"], replay["body"], replay["headers"]) == (
            first["statusCode"],
            first["body"],
            first["headers"],
        )
    assert [(v["version"], v["status"]) for v in key_versions(tenant_id)] == [(1, "retired"), (2, "active")]

    # A different key is a different request, and no key means no replay
    assert provision.http(keyed(tenant_id, "7f1c9a5e-retry-2")) == (201, {"version": 3, "status": "active"})
    assert provision.http(keyed(tenant_id, None)) == (201, {"version": 4, "status": "active"})
    assert provision(keyed(tenant_id, "7f1c9a5e-retry-1"))["body"] == first["body"]


def test_one_tenants_idempotency_key_never_answers_another_tenant(tenant_id):
    other = f"{tenant_id}-other"
    configured_global(tenant_id)
    configured_global(other)
    provision = Function("provision")
    for _ in range(2):
        provision.http(http_sample("provision_post", tenant_id))  # tenant_id is now on version 3

    mine = provision.http(keyed(tenant_id, "shared-key"))
    theirs = provision.http(keyed(other, "shared-key"))

    assert mine == (201, {"version": 4, "status": "active"})
    assert theirs == (201, {"version": 2, "status": "active"})
    assert [v["version"] for v in key_versions(other)] == [1, 2]


def test_a_malformed_idempotency_key_is_refused_and_changes_nothing(tenant_id):
    configured_global(tenant_id)
    provision = Function("provision")
    before = snapshot_tables(TABLES)
    for bad in ("", "a" * 129, "two words", "k\u00e9y", "a,b", '"unterminated', "tab\there"):
        status, body = provision.http(keyed(tenant_id, bad))
        assert status == 400 and body["error"]["code"] == "invalid_request", bad
        assert "Idempotency-Key" in body["error"]["message"]
    assert snapshot_tables(TABLES) == before


def test_a_refused_call_is_not_remembered_so_its_retry_runs(tenant_id):
    # Given a sealed tenant
    _, intact = sealed_by_the_active_version(tenant_id)
    provision = Function("provision")
    before = snapshot_tables(TABLES)

    # When a keyed provision is refused, nothing is left behind, the idempotency record included
    status, body = provision.http(keyed(tenant_id, "after-the-seal"))
    assert status == 423 and body["error"]["code"] == "sealed"
    assert snapshot_tables(TABLES) == before

    # Then once the tenant is unsealed the same key provisions, once
    boto3.client("dynamodb").put_item(TableName=TABLES["KeyVersionTable"], Item=intact)
    assert Function("configure").http(http_sample("configure_put_global", tenant_id))[1]["status"] == "active"
    assert provision.http(keyed(tenant_id, "after-the-seal")) == (201, {"version": 3, "status": "active"})
    assert provision.http(keyed(tenant_id, "after-the-seal")) == (201, {"version": 3, "status": "active"})


def test_a_retry_while_the_first_call_runs_answers_409_then_the_first_answer(tenant_id, dynamodb_local, monkeypatch):
    # Given an instance whose idempotency records go through a proxy that can hold them back
    configured_global(tenant_id)
    proxy = FaultProxy(dynamodb_local.endpoint)
    first_instance = Function("provision")
    with monkeypatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint)
        assert first_instance.module.repeat_safe.store is not None  # its client is built now
    second_instance = Function("provision")
    proxy.hold("UpdateItem")  # Powertools marks the record complete with UpdateItem

    # When the first call has provisioned but not yet recorded its answer
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(first_instance.http, keyed(tenant_id, "slow-one"))
        deadline = time.monotonic() + 60
        while proxy.held == 0 and time.monotonic() < deadline and not first.done():
            time.sleep(0.02)
        assert proxy.held == 1, first.result() if first.done() else "the first call never recorded its answer"

        # Then a retry with the same key is told to retry, and provisions nothing
        status, body = second_instance.http(keyed(tenant_id, "slow-one"))
        assert status == 409 and body["error"]["code"] == "conflict"
        assert "Idempotency-Key is in progress" in body["error"]["message"]
        proxy.release()
        answer = first.result(timeout=60)
    proxy.close()

    assert answer == (201, {"version": 2, "status": "active"})
    assert second_instance.http(keyed(tenant_id, "slow-one")) == answer
    assert [v["version"] for v in key_versions(tenant_id)] == [1, 2]


def test_an_identical_configure_twice_and_a_keyed_provision_twice_leave_one_version_each(tenant_id):
    configure = Function("configure")
    configure.service.clock = clock = Clock(time.time())
    views = []
    for _ in range(2):
        views.append(configure.http(http_sample("configure_put_global", tenant_id))[1])
        clock.advance(1)
    assert [v["active_version"] for v in views] == [1, 1]
    assert views[1]["last_verified_at"] > views[0]["last_verified_at"]
    provision = Function("provision")
    assert provision.http(keyed(tenant_id, "k1")) == provision.http(keyed(tenant_id, "k1"))
    assert [v["version"] for v in key_versions(tenant_id)] == [1, 2]


def test_a_key_reused_with_a_different_request_answers_422_and_runs_nothing(tenant_id):
    # POST …/keys takes no body, so the route cannot show this; the module under it can
    from tenant_kms.idempotency import IdempotencyKeyReused, RepeatSafe

    repeat_safe = RepeatSafe(TABLES["IdempotencyTable"], name="provision-reuse-check")
    repeat_safe.register_lambda_context(LocalContext("ProvisionFunction"))
    runs = []

    def produce() -> tuple[int, dict]:
        runs.append(1)
        return 201, {"run": len(runs)}

    assert repeat_safe.answer(tenant_id, "k", {"body": ""}, produce) == (201, '{"run": 1}')
    assert repeat_safe.answer(tenant_id, "k", {"body": ""}, produce) == (201, '{"run": 1}')
    with pytest.raises(IdempotencyKeyReused) as refused:
        repeat_safe.answer(tenant_id, "k", {"body": '{"other": true}'}, produce)
    assert (refused.value.status, refused.value.code) == (422, "idempotency_key_reused")
    assert runs == [1]


def test_idempotency_records_out_of_reach_answer_503_and_provision_nothing(tenant_id, dynamodb_local, monkeypatch):
    # Given an instance whose idempotency table stays throttled
    configured_global(tenant_id)
    proxy = DynamoDBFaultProxy(dynamodb_local.endpoint)
    provision = Function("provision")
    with monkeypatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint)
        env.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's own retries: keep the test short
        assert provision.module.repeat_safe.store is not None
    proxy.fail({"PutItem", "GetItem", "UpdateItem", "DeleteItem"}, "throttle")
    before = snapshot_tables(TABLES)

    # When a keyed provision arrives, it is told to come back, and nothing changed
    status, body = provision.http(keyed(tenant_id, "throttled"))
    proxy.close()
    assert (status, body["error"]["code"]) == (503, "unavailable"), body
    assert snapshot_tables(TABLES) == before
