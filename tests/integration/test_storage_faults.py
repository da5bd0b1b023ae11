"""DynamoDB throttling on the wire (a proxy in front of DynamoDB Local answering as DynamoDB
does): retried with growing, jittered backoff; once it persists, 503 ``unavailable`` with
Retry-After and nothing changed. A real conflict stays 409. Erasure interrupted after any
number of writes has destroyed every wrapped key before anything else went, reads as
erasing, and finishes when asked again; so does its purge job, interrupted anywhere."""

from __future__ import annotations

import itertools
import json

import boto3
import pytest
from faults import DynamoDBFaultProxy
from support import (
    Clock,
    Function,
    b64,
    http_sample,
    invoke_sample,
    job_unit,
    partition_items,
    purge_job,
    run_job,
    sample,
    snapshot_tables,
)
from testenv import TABLES, TENANT_TABLES

from tenant_kms.jobs import LEASE_SECONDS

ATTEMPTS = 5  # the service's default Backoff.attempts
WRITE_ATTEMPTS = 5  # service.WRITE_ATTEMPTS


@pytest.fixture(scope="session")
def dynamodb_proxy(dynamodb_local):
    # Never closed: models bound while it was the endpoint keep using it until rebound.
    return DynamoDBFaultProxy(dynamodb_local.endpoint)


@pytest.fixture
def faults(dynamodb_proxy, monkeypatch):
    """Functions created from here on reach DynamoDB through the proxy."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_proxy.endpoint)
    dynamodb_proxy.reset()
    yield dynamodb_proxy
    dynamodb_proxy.reset()


@pytest.fixture
def direct(dynamodb_local):
    """A client that bypasses the proxy, to look at the tables as they are."""
    return boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint)


class Deployment:
    """One warm instance of each function (creating instances costs SDK clients), whose
    backoff delays are recorded instead of slept."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        for name in ("configure", "provision", "tenant_data", "unwrap", "verify", "erase", "rewrap"):
            function = Function(name)
            function.service.backoff.sleep = self.delays.append
            setattr(self, name, function)


@pytest.fixture
def fns(faults) -> Deployment:
    return Deployment()


def assert_backoff(delays: list[float], base: float = 0.1) -> None:
    ceilings = [base * 2**n for n in range(len(delays))]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert delays == sorted(delays) and len(set(delays)) == len(delays)
    assert delays != [c / 2 for c in ceilings] and delays != ceilings  # jittered, not fixed steps


def assert_unavailable(response: dict) -> None:
    assert response["statusCode"] == 503, response
    assert response["headers"]["Retry-After"] == "1"
    error = json.loads(response["body"])["error"]
    assert error["code"] == "unavailable" and "retry" in error["message"]


def given_tenant(fns: Deployment, tenant_id: str, records: int = 3) -> None:
    assert fns.configure.http(http_sample("configure_put_global", tenant_id))[0] == 200
    data = fns.tenant_data
    for i in range(records):
        assert data(invoke_sample("tenant_data_put", tenant_id, name=f"r{i}", value_b64=b64(b"v%d" % i)))["version"]


@pytest.mark.parametrize("kind", ["throughput", "throttle", "request_limit"])
def test_a_read_throttled_past_the_retries_answers_503_unavailable(fns, faults, tenant_id, kind):
    given_tenant(fns, tenant_id, records=1)
    faults.calls.clear()
    faults.fail("GetItem", kind)

    assert_unavailable(fns.configure(http_sample("configure_get", tenant_id)))
    assert faults.calls["GetItem"] == ATTEMPTS
    assert_backoff(fns.delays)


def test_direct_invoke_names_the_wait_in_its_error(fns, faults, tenant_id):
    given_tenant(fns, tenant_id, records=1)
    faults.fail("GetItem", "throughput")

    answer = fns.unwrap(invoke_sample("unwrap", tenant_id))
    assert answer["error"]["code"] == "unavailable" and answer["error"]["retry_after_seconds"] == 1


def test_throttling_that_clears_within_the_retries_is_invisible(fns, faults, tenant_id):
    given_tenant(fns, tenant_id, records=1)
    faults.calls.clear()
    faults.fail("BatchGetItem", "throughput", times=2)
    faults.fail("TransactWriteItems", "cancel_throttled", times=2)

    answer = fns.tenant_data(invoke_sample("tenant_data_put", tenant_id, name="r0", value_b64=b64(b"new")))
    assert answer == {"name": "r0", "version": 1}
    assert faults.calls["BatchGetItem"] == 3 and faults.calls["TransactWriteItems"] == 3
    assert len(fns.delays) == 4  # two for the read, two for the transaction
    assert fns.tenant_data(invoke_sample("tenant_data_get", tenant_id, name="r0"))["value_b64"] == b64(b"new")


def test_a_batch_read_left_partly_unprocessed_reads_the_rest(fns, faults, tenant_id):
    given_tenant(fns, tenant_id, records=1)
    faults.calls.clear()
    faults.fail("BatchGetItem", "partial", times=1)

    answer = fns.tenant_data(invoke_sample("tenant_data_get", tenant_id, name="r0"))
    assert answer == {"name": "r0", "value_b64": b64(b"v0"), "version": 1}
    assert faults.calls["BatchGetItem"] == 2 and len(fns.delays) == 1


@pytest.mark.parametrize(
    ("function", "event"),
    [
        ("tenant_data", lambda t: invoke_sample("tenant_data_put", t, name="r9", value_b64=b64(b"x"))),
        ("tenant_data", lambda t: invoke_sample("tenant_data_delete", t, name="r0")),
        ("provision", lambda t: http_sample("provision_post", t)),
    ],
    ids=["put-record", "delete-record", "provision"],
)
def test_a_transaction_throttled_past_the_retries_answers_503_and_changes_nothing(
    fns, faults, direct, tenant_id, function, event
):
    given_tenant(fns, tenant_id, records=1)
    faults.calls.clear()
    faults.fail("TransactWriteItems", "cancel_throttled")
    before = snapshot_tables(TABLES, direct)

    answer = getattr(fns, function)(event(tenant_id))
    if "statusCode" in answer:
        assert_unavailable(answer)
    else:
        assert answer["error"]["code"] == "unavailable"
    assert faults.calls["TransactWriteItems"] == ATTEMPTS  # retried, not reported as a conflict
    assert_backoff(fns.delays)
    assert snapshot_tables(TABLES, direct) == before


def test_a_transaction_meeting_one_in_flight_is_retried_and_never_a_409(fns, faults, direct, tenant_id):
    """DynamoDB cancels a transaction that touches an item another transaction is writing
    (reason TransactionConflict). Catches it taken for a failed condition (409) or not
    retried: it lands once the other is done, and answers 503 with nothing changed if it
    never is."""
    given_tenant(fns, tenant_id, records=1)
    faults.calls.clear()
    faults.fail("TransactWriteItems", "cancel_in_flight", times=2)

    answer = fns.tenant_data(invoke_sample("tenant_data_put", tenant_id, name="r0", value_b64=b64(b"new")))
    assert answer == {"name": "r0", "version": 1}
    assert faults.calls["TransactWriteItems"] == 3

    faults.calls.clear()
    fns.delays.clear()
    faults.fail("TransactWriteItems", "cancel_in_flight")
    before = snapshot_tables(TABLES, direct)
    answer = fns.tenant_data(invoke_sample("tenant_data_put", tenant_id, name="r0", value_b64=b64(b"x")))
    assert answer["error"]["code"] == "unavailable"
    assert faults.calls["TransactWriteItems"] == ATTEMPTS
    assert_backoff(fns.delays)
    assert snapshot_tables(TABLES, direct) == before


def test_a_real_conflict_stays_409_after_backing_off(fns, faults, direct, tenant_id):
    given_tenant(fns, tenant_id, records=1)
    faults.calls.clear()
    faults.fail("TransactWriteItems", "cancel_conflict")
    before = snapshot_tables(TABLES, direct)

    answer = fns.tenant_data(invoke_sample("tenant_data_put", tenant_id, name="r0", value_b64=b64(b"x")))
    assert answer["error"]["code"] == "conflict"
    # Each attempt re-reads and writes once: a failed condition is never resent as is.
    assert faults.calls["TransactWriteItems"] == WRITE_ATTEMPTS
    assert_backoff(fns.delays)
    assert snapshot_tables(TABLES, direct) == before


def tenant_rows(direct, tenant_id: str) -> dict[str, list[dict]]:
    rows = {}
    for table, name in TENANT_TABLES.items():
        rows[table] = []
        for partition in (tenant_id, f"{tenant_id}#external-id"):
            rows[table] += partition_items(name, partition, direct)
    return rows


def given_tenant_to_erase(fns: Deployment, tenant_id: str, records: int) -> None:
    """Two key versions, records under both, and an issued external id."""
    given_tenant(fns, tenant_id, records=records // 2)
    assert fns.provision.http(http_sample("provision_post", tenant_id))[0] == 201
    for i in range(records // 2, records):
        put = invoke_sample("tenant_data_put", tenant_id, name=f"r{i}", value_b64=b64(b"w"))
        assert fns.tenant_data(put)["version"] == 2
    assert fns.configure.http(http_sample("configure_onboarding_get", tenant_id))[0] == 200


def assert_crypto_erased_first(rows: dict[str, list[dict]], records: int) -> None:
    """Once a record or the config row has gone, no wrapped key is left."""
    wrapped = [r for r in rows["KeyVersionTable"] if "wrapped_key" in r]
    if wrapped:
        assert len(rows["TenantDataTable"]) == records and len(rows["TenantConfigTable"]) == 1


def no_wrapped_key(rows: dict[str, list[dict]]) -> bool:
    return not any("wrapped_key" in r for r in rows["KeyVersionTable"])


def assert_reads_as_erasing(fns: Deployment, tenant_id: str) -> None:
    status, view = fns.configure.http(http_sample("configure_get", tenant_id))
    assert (status, view["status"]) == (200, "erasing")
    for answer in (
        fns.unwrap(invoke_sample("unwrap", tenant_id)),
        fns.tenant_data(invoke_sample("tenant_data_get", tenant_id, name="r0")),
        fns.tenant_data(invoke_sample("tenant_data_put", tenant_id, name="r0", value_b64=b64(b"x"))),
    ):
        assert answer["error"]["code"] == "conflict" and "being erased" in answer["error"]["message"]
    status, body = fns.provision.http(http_sample("provision_post", tenant_id))
    assert (status, body["error"]["code"]) == (409, "conflict")


def test_erase_interrupted_after_any_write_resumes_with_the_keys_gone_first(fns, faults, direct, tenant_id):
    records = 4
    for k in itertools.count():
        tenant = f"{tenant_id}-{k}"
        given_tenant_to_erase(fns, tenant, records)
        before = snapshot_tables(TABLES, direct) if k == 0 else None
        faults.reset()
        faults.writes_allowed = k

        # When the erasure stops after k writes (the next one stays throttled)
        answer = fns.erase(http_sample("erase_delete", tenant))
        faults.reset()
        if answer["statusCode"] == 204:
            # fence, key versions, the purge job's start: the records wait for the job
            rows = tenant_rows(direct, tenant)
            assert k >= 3 and no_wrapped_key(rows) and len(rows["TenantDataTable"]) == records
            assert_reads_as_erasing(fns, tenant)
            assert_purged(fns, direct, tenant)
            break
        assert_unavailable(answer)

        # Then no wrapped key outlived the first deletion of anything else
        assert_crypto_erased_first(tenant_rows(direct, tenant), records)
        if k == 0:
            assert snapshot_tables(TABLES, direct) == before  # refused before any write
            continue
        assert_reads_as_erasing(fns, tenant)

        # When it is asked again, it finishes: once purged, nothing of the tenant is left
        assert fns.erase.http(http_sample("erase_delete", tenant)) == (204, None)
        assert_purged(fns, direct, tenant)


def assert_purged(fns: Deployment, direct, tenant_id: str) -> None:
    """The erased tenant's purge job, run to its end, leaves nothing of the tenant."""
    assert run_job(fns.rewrap, purge_job(tenant_id, direct))["status"] == "succeeded"
    assert tenant_rows(direct, tenant_id) == {table: [] for table in TENANT_TABLES}
    assert fns.configure.http(http_sample("configure_get", tenant_id))[1]["status"] == "unconfigured"
    before = snapshot_tables(TABLES, direct)
    status, body = fns.erase.http(http_sample("erase_delete", tenant_id))
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert snapshot_tables(TABLES, direct) == before


def test_a_purge_interrupted_after_any_write_resumes_and_leaves_nothing(fns, faults, direct, tenant_id):
    records = 4
    clock = Clock()
    fns.rewrap.service.clock = clock
    for k in itertools.count():
        tenant = f"{tenant_id}-{k}"
        given_tenant_to_erase(fns, tenant, records)
        assert fns.erase.http(http_sample("erase_delete", tenant)) == (204, None)
        job = purge_job(tenant, direct)
        faults.reset()
        faults.writes_allowed = k

        # When the purge's unit stops after k writes (the next one stays throttled)
        answer = fns.rewrap(job_unit(job))
        faults.reset()
        if "job_id" in answer:
            # its lease, the records, its jobs, the external id, the config
            assert k >= 5 and answer["status"] == "succeeded"
            assert tenant_rows(direct, tenant) == {table: [] for table in TENANT_TABLES}
            break
        assert answer["error"]["code"] == "unavailable", answer

        # Then the tenant still reads as erasing, without a key
        rows = tenant_rows(direct, tenant)
        assert no_wrapped_key(rows) and rows["TenantConfigTable"][0]["status"] == {"S": "erasing"}
        assert_reads_as_erasing(fns, tenant)

        # When the interrupted worker's lease has run out and the tenant is erased again
        clock.advance(LEASE_SECONDS + 1)
        assert fns.erase.http(http_sample("erase_delete", tenant)) == (204, None)

        # Then its purge finishes the erasure
        assert_purged(fns, direct, tenant)


def test_erase_whose_batch_writes_are_partly_unprocessed_still_completes(fns, faults, direct, tenant_id):
    given_tenant_to_erase(fns, tenant_id, 26)  # records take two batches
    faults.calls.clear()
    fns.delays.clear()
    faults.fail("BatchWriteItem", "partial", times=3)

    assert fns.erase(http_sample("erase_delete", tenant_id))["statusCode"] == 204
    assert no_wrapped_key(tenant_rows(direct, tenant_id))
    assert run_job(fns.rewrap, purge_job(tenant_id, direct))["status"] == "succeeded"
    assert tenant_rows(direct, tenant_id) == {table: [] for table in TENANT_TABLES}
    # five batches (2 versions with their 32 usage rows, then 26 records, then the jobs), the
    # first three's unprocessed rest sent again
    assert faults.calls["BatchWriteItem"] == 5 + 3
    assert len(fns.delays) == 3


def test_erase_whose_batch_writes_stay_unprocessed_is_finished_by_the_schedule(fns, faults, direct, tenant_id):
    given_tenant_to_erase(fns, tenant_id, 4)
    fns.delays.clear()
    faults.fail("BatchWriteItem", "partial")

    assert_unavailable(fns.erase(http_sample("erase_delete", tenant_id)))
    assert_backoff(fns.delays)
    rows = tenant_rows(direct, tenant_id)
    assert_crypto_erased_first(rows, 4)
    assert len(rows["TenantConfigTable"]) == 1 and rows["TenantConfigTable"][0]["status"] == {"S": "erasing"}

    faults.reset()
    # When the re-verify sweep's unit for the tenant arrives, as Lambda's event source delivers it
    unit = sample("verify_reverify_units")
    unit["Records"][0]["body"] = json.dumps(
        {"sweep": "reverify", "sweep_id": "2026-11-29T00:00:00.000Z~erasure", "tenant_id": tenant_id}
    )
    assert fns.verify(unit) == {"batchItemFailures": []}
    # Then its keys are gone and its purge job runs, as after the erase route
    assert no_wrapped_key(tenant_rows(direct, tenant_id))
    assert run_job(fns.rewrap, purge_job(tenant_id, direct))["status"] == "succeeded"
    # and once the purge is done, no row of the tenant is left, its visit included
    assert tenant_rows(direct, tenant_id) == {table: [] for table in TENANT_TABLES}


def test_a_transaction_that_landed_but_lost_its_answer_answers_as_landed(fns, faults, direct, tenant_id):
    """DynamoDB applied the transaction, then its answer was lost (500 InternalServerError:
    outcome unknown). The retry carries the first attempt's ClientRequestToken, so DynamoDB
    answers success without applying it again; without it the retry fails its own conditions
    (a 409 for a provision) or counts twice."""
    given_tenant(fns, tenant_id, records=1)
    faults.calls.clear()
    faults.fail("TransactWriteItems", "lost_answer", times=1)

    status, view = fns.provision.http(http_sample("provision_post", tenant_id))
    assert status == 201, view
    assert faults.calls["TransactWriteItems"] == 2  # applied, then answered as applied

    faults.calls.clear()
    faults.fail("TransactWriteItems", "lost_answer", times=1)
    answer = fns.tenant_data(invoke_sample("tenant_data_put", tenant_id, name="r1", value_b64=b64(b"new")))
    assert answer == {"name": "r1", "version": 2}
    assert faults.calls["TransactWriteItems"] == 2

    status, listed = fns.provision.http(http_sample("provision_list", tenant_id))
    assert [(v["version"], v["records"], v["encryptions"]) for v in listed["versions"]] == [(1, 1, 1), (2, 1, 1)]
    assert len(partition_items(TABLES["TenantDataTable"], tenant_id, direct)) == 2
    assert fns.tenant_data(invoke_sample("tenant_data_get", tenant_id, name="r1"))["value_b64"] == b64(b"new")
