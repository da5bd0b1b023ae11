"""The BYOK kill switch end to end on customer_kms_aws (moto, IAM enforced): the customer
pulls the grant, the tenant seals on every version, and only the active version unwrapping
again (here: the scheduled re-poll) lifts the seal."""

from __future__ import annotations

from moto.core.authorization import disable_iam_authentication
from support import (
    Clock,
    Function,
    assert_documented,
    b64,
    http_sample,
    invoke_sample,
    sample,
    snapshot_tables,
    step_up,
)
from testenv import TABLES
from world import configure, put_records, read, view

from tenant_kms.sweeps import REPOLL, Sweeps

GLOBAL_RECORDS = {"g1": b"global one", "g2": b"global two", "g3": b"global three"}
CUSTOMER_RECORDS = {"c1": b"customer one", "c2": b"customer two"}


def snapshot() -> dict:
    """The key tables (a re-poll records its visits in the sweep table)."""
    with disable_iam_authentication():
        return snapshot_tables({name: table for name, table in TABLES.items() if name != "SweepTable"})


def repoll(queues, tenant: str) -> str | None:
    """The scheduled re-poll through its queue, with the deployed timeout (other tests' sealed
    tenants share the tables); what it found for the tenant."""
    queues.sweep("verify", sample("verify_repoll_sealed"), timeout_ms=300_000)
    visit = Sweeps.visit_of(REPOLL, tenant)
    return visit and visit["outcome"]


def unseal(tenant_id: str) -> tuple[int, dict]:
    event = step_up(http_sample("verify_unseal", tenant_id))
    status, _, body = assert_documented(event, Function("verify")(event))
    return status, body


def refused(function: str, event: dict) -> str:
    """The error code of an admin route's answer, which docs/openapi.json documents."""
    return assert_documented(event, Function(function)(event))[2]["error"]["code"]


def test_pulled_grant_seals_every_version_until_the_repoll_finds_it_restored(tenant_id, queues, customer, kms_proxy):
    # Given v1 under the global key and v2 under the customer's key, each with records,
    # read once by warm instances (v1 cached for an hour, v2 for five minutes)
    assert configure(tenant_id, "global", {})[0] == 200
    put_records(tenant_id, GLOBAL_RECORDS)
    status, body = configure(tenant_id, "customer_kms_aws", customer.config())
    assert (status, body["active_version"]) == (200, 2), body
    put_records(tenant_id, CUSTOMER_RECORDS)
    clock = Clock()
    data, unwrap = Function("tenant_data"), Function("unwrap")
    data.service.clock = unwrap.service.clock = clock
    expected = {**{n: (v, 1) for n, v in GLOBAL_RECORDS.items()}, **{n: (v, 2) for n, v in CUSTOMER_RECORDS.items()}}
    assert {name: read(tenant_id, name, data) for name in expected} == expected

    # When the customer pulls the grant and the customer key's session runs out
    customer.pull_grant()
    clock.advance(301)
    assert read(tenant_id, "c1", data) == "sealed"
    sealed = view(tenant_id)
    assert sealed["status"] == "sealed" and "AccessDenied" in sealed["sealed_reason"]

    # Then every key operation on every version answers sealed, without asking KMS
    kms_proxy.reset()
    before = snapshot()
    answers = [
        read(tenant_id, "g1", data),  # v1 still within its hour in this instance
        read(tenant_id, "g2", Function("tenant_data")),  # v1 from a cold instance
        unwrap(invoke_sample("unwrap_version", tenant_id, version=1))["error"]["code"],
        unwrap(invoke_sample("unwrap", tenant_id))["error"]["code"],
        data(invoke_sample("tenant_data_put", tenant_id, name="new", value_b64=b64(b"x")))["error"]["code"],
        refused("provision", step_up(http_sample("provision_post", tenant_id))),
        refused("rewrap", http_sample("rewrap_post", tenant_id)),
    ]
    assert answers == ["sealed"] * len(answers)
    assert sum(kms_proxy.calls.values()) == 0
    assert snapshot() == before and view(tenant_id)["status"] == "sealed"

    # And a record can still be deleted: that needs no key
    assert data(invoke_sample("tenant_data_delete", tenant_id, name="g3")) == {"name": "g3", "deleted": True}
    del expected["g3"]

    # While the grant stays pulled, unsealing is refused (one try of the active version)
    before = snapshot()
    status, body = unseal(tenant_id)
    assert (status, body["error"]["code"]) == (422, "verification_failed"), body
    assert kms_proxy.calls["Decrypt"] == 1
    # and while KMS does not answer, it is unavailable, not refused
    kms_proxy.fail_always("5xx")
    try:
        status, body = unseal(tenant_id)
    finally:
        kms_proxy.fail_always(None)
    assert (status, body["error"]["code"]) == (503, "provider_unavailable"), body
    assert snapshot() == before

    # When the customer restores the grant, nothing unseals by itself until the re-poll runs
    customer.restore_grant()
    assert read(tenant_id, "c1", data) == "sealed"
    # a re-poll that cannot reach KMS reports it and leaves the tenant sealed
    kms_proxy.fail_always("5xx")
    try:
        found = repoll(queues, tenant_id)
    finally:
        kms_proxy.fail_always(None)
    assert found == "failed:provider_unavailable"
    assert view(tenant_id)["status"] == "sealed" and snapshot() == before
    assert repoll(queues, tenant_id) == "active"

    # Then the tenant is active and every record of every version opens again
    assert view(tenant_id)["status"] == "active"
    assert {name: read(tenant_id, name, data) for name in expected} == expected
    assert {name: read(tenant_id, name, Function("tenant_data")) for name in expected} == expected
