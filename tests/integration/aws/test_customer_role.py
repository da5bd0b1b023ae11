"""What the README says of the customer's role, on moto with IAM enforced: which accounts'
roles may be assumed (CUSTOMER_ACCOUNT_IDS), how often they are assumed (once per tenant
while the credentials are young, counted on moto's STS), and what a failing verification
changes (nothing but the error it records)."""

from __future__ import annotations

import uuid

from conftest import ACCOUNT, make_customer
from moto.core.authorization import disable_iam_authentication
from moto.sts.models import sts_backends
from support import Clock, Function, http_sample, invoke_sample, snapshot_tables, structured_logs
from testenv import TABLES
from world import configure, view


def assumed(role_arn: str) -> list[str]:
    """The session names of every AssumeRole into ``role_arn`` that moto's STS granted."""
    return [r.session_name for r in sts_backends[ACCOUNT]["aws"].assumed_roles if r.role_arn == role_arn]


def snapshot() -> dict:
    with disable_iam_authentication():
        return snapshot_tables(TABLES)


def test_customer_account_ids_limits_whose_roles_a_config_may_name(tenant_id, customer, monkeypatch):
    """Catches CUSTOMER_ACCOUNT_IDS being ignored: a config naming a role in an account the
    deployment does not serve must be refused before any AWS call, and change nothing."""
    monkeypatch.setenv("CUSTOMER_ACCOUNT_IDS", "111122223333,444455556666")
    before = snapshot()
    status, body = configure(tenant_id, "customer_kms_aws", customer.config())
    assert (status, body["error"]["code"]) == (400, "invalid_request"), body
    assert ACCOUNT in body["error"]["message"]
    assert snapshot() == before and assumed(customer.role_arn) == []

    monkeypatch.setenv("CUSTOMER_ACCOUNT_IDS", f"111122223333,{ACCOUNT}")
    status, body = configure(tenant_id, "customer_kms_aws", customer.config())
    assert status == 200, body


def test_assumed_role_credentials_are_cached_per_tenant(tenant_id, aws, kms_proxy):
    """Catches assumed-role credentials that are not reused (an AssumeRole per KMS call: STS
    throttling and latency on every cache miss) or that are shared between tenants (one
    tenant's session of the customer's role serving another)."""
    other = f"t-{uuid.uuid4().hex[:12]}"
    customer = make_customer(aws, [tenant_id, other])
    for tenant in (tenant_id, other):
        assert configure(tenant, "customer_kms_aws", customer.config())[0] == 200
    unwrap = Function("unwrap")
    clock = Clock()
    unwrap.service.clock = clock
    assumed_before = len(assumed(customer.role_arn))
    wrapping_before = len(assumed(aws.wrapping_role_arn))
    kms_proxy.reset()

    for _ in range(3):
        clock.advance(301)  # each round's unwrap is a cache miss: a Decrypt per tenant
        for tenant in (tenant_id, other):
            assert "key_b64" in unwrap(invoke_sample("unwrap", tenant))

    assert kms_proxy.calls["Decrypt"] == 6
    # One AssumeRole per tenant into the customer's role, named after that tenant ...
    assert sorted(assumed(customer.role_arn)[assumed_before:]) == sorted(
        [f"tenant-kms-{tenant_id}", f"tenant-kms-{other}"]
    )
    # ... made from that tenant's own session of the key-wrapping role, also assumed once
    assert sorted(assumed(aws.wrapping_role_arn)[wrapping_before:]) == sorted([tenant_id, other])


def test_a_failing_verify_records_the_error_and_changes_no_key(tenant_id, customer, capsys):
    """Catches a failing POST /verify that touches keys or state: only last_verify_error on
    the tenant's config may change (no seal, no version, no last_verified_at), and the
    failure is audited and counted (VerificationFailures)."""
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    verified_at = view(tenant_id)["last_verified_at"]
    customer.pull_grant()
    before = snapshot()
    capsys.readouterr()

    with structured_logs() as logs:
        status, body = Function("verify").http(http_sample("verify_post", tenant_id))

    assert status == 200 and body["ok"] is False and "AccessDenied" in body["last_verify_error"], body
    after = snapshot()
    configs = TABLES["TenantConfigTable"]
    for table in TABLES.values():
        if table != configs:
            assert after[table] == before[table], table
    row_before = next(i for i in before[configs] if i["tenant_id"]["S"] == tenant_id)
    row_after = next(i for i in after[configs] if i["tenant_id"]["S"] == tenant_id)
    assert "AccessDenied" in row_after.pop("last_verify_error")["S"]
    assert row_after == row_before
    assert [i for i in after[configs] if i["tenant_id"]["S"] != tenant_id] == [
        i for i in before[configs] if i["tenant_id"]["S"] != tenant_id
    ]
    shown = view(tenant_id)
    assert (shown["status"], shown["active_version"], shown["last_verified_at"]) == ("active", 1, verified_at)
    assert '"action":"verify"' in logs.getvalue() and '"outcome":"verification_failed"' in logs.getvalue()
    assert '"VerificationFailures":[1.0]' in capsys.readouterr().out.replace(" ", "")
