"""customer_kms_aws through moto with IAM enforcement: configure, refusals, the kill switch,
transient faults, and the session cache's cost in KMS calls."""

from __future__ import annotations

import base64
import os
import uuid

import boto3
import pytest
from conftest import make_customer
from moto.core.authorization import disable_iam_authentication
from support import (
    Clock,
    Function,
    assert_no_key_material,
    b64,
    http_sample,
    invoke_sample,
    run_rewrap,
    snapshot_tables,
    step_up,
    structured_logs,
)
from testenv import MASTER_KEY, TABLES
from world import configure, put_records, read, view


def test_configure_customer_key_binds_the_wrap_by_encryption_context(tenant_id, customer, kms_proxy):
    status, body = configure(tenant_id, "customer_kms_aws", customer.config())
    assert status == 200, body
    assert body["provider"] == "customer_kms_aws" and body["last_verified_at"] and body["session_ttl_seconds"] == 300
    assert kms_proxy.calls["Encrypt"] == 2 and kms_proxy.calls["Decrypt"] == 1  # probe round trip + the TMK wrap

    with disable_iam_authentication():
        row = boto3.client("dynamodb").get_item(
            TableName=TABLES["KeyVersionTable"], Key={"tenant_id": {"S": tenant_id}, "version": {"N": "1"}}
        )["Item"]
        assert row["key_id"]["S"] == customer.key_arn and row["provider"]["S"] == "customer_kms_aws"
        kms = boto3.client("kms")
        blob = row["wrapped_key"]["B"]
        context = {"tenant_id": tenant_id, "tmk_version": "1", "purpose": "tenant-master-key"}
        assert len(kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]) == 32
        for wrong in ({**context, "tmk_version": "2"}, {**context, "tenant_id": "other"}, {}):
            with pytest.raises(kms.exceptions.InvalidCiphertextException):
                kms.decrypt(CiphertextBlob=blob, EncryptionContext=wrong)


def refusal_cases():
    return {
        "an external id the service did not issue": (
            lambda c, a, t: c.config(external_id="not-the-agreed-id"),
            400,
            "invalid_request",
        ),
        "another tenant's issued external id": (
            lambda c, a, t: c.config(external_id=make_customer(a, f"{t}-other").external_ids[f"{t}-other"]),
            400,
            "invalid_request",
        ),
        "role without kms:Decrypt": (
            lambda c, a, t: make_customer(a, t, kms_actions=("kms:Encrypt",)).config(),
            422,
            "verification_failed",
        ),
        "key that does not exist": (
            lambda c, a, t: c.config(key_arn=f"arn:aws:kms:us-east-1:123456789012:key/{uuid.uuid4()}"),
            422,
            "verification_failed",
        ),
        "key arn in another region": (
            lambda c, a, t: c.config(key_arn=c.key_arn.replace("us-east-1", "eu-west-1")),
            400,
            "invalid_request",
        ),
        "external id STS would refuse": (lambda c, a, t: c.config(external_id="a b"), 400, "invalid_request"),
        "not a role arn": (lambda c, a, t: c.config(role_arn=c.key_arn), 400, "invalid_request"),
    }


@pytest.mark.parametrize("case", list(refusal_cases()))
def test_refused_configs_change_nothing(tenant_id, aws, customer, case):
    make_config, status, code = refusal_cases()[case]
    assert configure(tenant_id, "global", {})[0] == 200
    config = make_config(customer, aws, tenant_id)
    with disable_iam_authentication():
        before = snapshot_tables(TABLES)
    answer, body = configure(tenant_id, "customer_kms_aws", config)
    assert (answer, body["error"]["code"]) == (status, code), body
    with disable_iam_authentication():
        after = snapshot_tables(TABLES)
    if status == 422:  # the probe ran: only last_verify_error on the existing row may differ
        config_rows = {name: rows for name, rows in after.items() if name == TABLES["TenantConfigTable"]}
        for rows in config_rows.values():
            for row in rows:
                if row["tenant_id"]["S"] == tenant_id:
                    assert "customer_kms_aws" in row.pop("last_verify_error")["S"]
    assert after == before
    assert view(tenant_id)["provider"] == "global"


def test_kill_switch_seals_after_the_ttl_and_restoring_the_grant_unseals(tenant_id, customer, kms_proxy):
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    unwrap, data = Function("unwrap"), Function("tenant_data")
    clock = Clock()
    unwrap.service.clock = data.service.clock = clock
    put_records(tenant_id, {"db-password": b"hunter2"}, data)
    key = unwrap(invoke_sample("unwrap", tenant_id))["key_b64"]

    # The customer pulls the grant: cached keys keep working until their TTL runs out
    customer.pull_grant()
    clock.advance(299)
    assert unwrap(invoke_sample("unwrap", tenant_id))["key_b64"] == key
    assert read(tenant_id, "db-password", data) == (b"hunter2", 1)

    clock.advance(2)
    assert unwrap(invoke_sample("unwrap", tenant_id))["error"]["code"] == "sealed"
    sealed = view(tenant_id)
    assert sealed["status"] == "sealed" and "AccessDenied" in sealed["sealed_reason"]
    assert read(tenant_id, "db-password", data) == "sealed"
    put = data(invoke_sample("tenant_data_put", tenant_id, name="new", value_b64=b64(b"x")))
    assert put["error"]["code"] == "sealed"
    status, body = Function("provision").http(http_sample("provision_post", tenant_id))
    assert (status, body["error"]["code"]) == (423, "sealed")

    # The customer restores it: the seal holds until the active version unwraps again
    customer.restore_grant()
    assert unwrap(invoke_sample("unwrap", tenant_id))["error"]["code"] == "sealed"
    assert Function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))[0] == 200
    assert unwrap(invoke_sample("unwrap", tenant_id))["key_b64"] == key
    assert view(tenant_id)["status"] == "active" and view(tenant_id)["sealed_reason"] is None
    assert read(tenant_id, "db-password", data) == (b"hunter2", 1)


def test_throttling_is_retried_then_answers_503_without_sealing(tenant_id, customer, kms_proxy):
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    unwrap = Function("unwrap")
    clock = Clock()
    unwrap.service.clock = clock

    # Two throttles, then success: botocore's retries absorb them
    kms_proxy.reset()
    kms_proxy.fail_next(2, "throttle")
    first = unwrap(invoke_sample("unwrap", tenant_id))
    assert "key_b64" in first and kms_proxy.calls["Decrypt"] == 3

    # Persistent throttling once the TTL is over: 503, not sealed, and no stale key served
    clock.advance(301)
    kms_proxy.fail_always("throttle")
    answer = unwrap(invoke_sample("unwrap", tenant_id))
    assert answer["error"]["code"] == "provider_unavailable" and "key_b64" not in answer
    assert kms_proxy.calls["Decrypt"] == 3 + 4  # KMS_MAX_ATTEMPTS
    assert view(tenant_id)["status"] == "active"

    kms_proxy.fail_always("5xx")
    assert unwrap(invoke_sample("unwrap", tenant_id))["error"]["code"] == "provider_unavailable"
    kms_proxy.fail_always(None)
    assert unwrap(invoke_sample("unwrap", tenant_id))["key_b64"] == first["key_b64"]


def test_a_kms_that_does_not_answer_in_time_is_provider_unavailable(tenant_id, customer, kms_proxy, monkeypatch):
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    monkeypatch.setenv("KMS_READ_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("KMS_MAX_ATTEMPTS", "2")
    unwrap = Function("unwrap")
    kms_proxy.delay_seconds = 2.5
    kms_proxy.fail_always("slow")
    try:
        answer = unwrap(invoke_sample("unwrap", tenant_id))
    finally:
        kms_proxy.fail_always(None)
    assert answer["error"]["code"] == "provider_unavailable"
    assert view(tenant_id)["status"] == "active"


def test_one_decrypt_per_tenant_per_ttl_for_a_thousand_unwraps(aws, kms_proxy):
    tenants = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(10)]
    customers = [make_customer(aws, tenants[index::2]) for index in range(2)]
    for index, tenant in enumerate(tenants):
        assert configure(tenant, "customer_kms_aws", customers[index % 2].config())[0] == 200
    unwrap = Function("unwrap")
    clock = Clock()
    unwrap.service.clock = clock

    kms_proxy.reset()
    for _ in range(100):
        for tenant in tenants:
            assert "key_b64" in unwrap(invoke_sample("unwrap", tenant))
        clock.advance(2)  # 200 s in all: within the 300 s TTL
    assert kms_proxy.calls["Decrypt"] == 10

    clock.advance(101)
    for tenant in tenants:
        assert "key_b64" in unwrap(invoke_sample("unwrap", tenant))
        assert "key_b64" in unwrap(invoke_sample("unwrap", tenant))
    assert kms_proxy.calls["Decrypt"] == 20


def test_global_to_customer_and_back_with_data_and_the_kill_switch(tenant_id, customer, kms_proxy, capfd):
    with structured_logs() as logs:
        migrate_with_data(tenant_id, customer, kms_proxy)
        unwrap = Function("unwrap")
        keys = [
            base64.b64decode(unwrap(invoke_sample("unwrap_version", tenant_id, version=v))["key_b64"]) for v in (2, 3)
        ]
    out, err = capfd.readouterr()
    assert "audit unwrap success" in logs.getvalue() and "audit get_record success" in logs.getvalue()
    assert_no_key_material(out + err + logs.getvalue(), [MASTER_KEY, *keys])


def migrate_with_data(tenant_id, customer, kms_proxy):
    # Given a global tenant with 100 records
    assert configure(tenant_id, "global", {})[0] == 200
    values = {f"r{i:03d}": os.urandom(20) for i in range(100)}
    put_records(tenant_id, values)

    # When it switches to its own AWS key and the rewrap runs
    status, switched = configure(tenant_id, "customer_kms_aws", customer.config())
    assert status == 200 and switched["active_version"] == 2 and switched["provider"] == "customer_kms_aws"
    job = run_rewrap(tenant_id)
    assert (job["status"], job["migrated"], job["remaining"]) == ("succeeded", 100, 0)
    data = Function("tenant_data")
    clock = Clock()
    data.service.clock = clock
    assert all(read(tenant_id, name, data) == (value, 2) for name, value in values.items())
    assert kms_proxy.calls["Decrypt"] <= 3  # probe, and one unwrap per (tenant, version) per instance

    # Then the global version can be destroyed, and the customer alone holds the keys
    assert Function("provision").http(http_sample("provision_destroy", tenant_id, version=1))[0] == 204
    customer.pull_grant()
    clock.advance(301)
    assert {read(tenant_id, name, data) for name in values} == {"sealed"}
    customer.restore_grant()
    assert Function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))[0] == 200
    assert all(read(tenant_id, name, data) == (value, 2) for name, value in values.items())

    # Switching back to global: probe, new version 3, data still readable, rewrap moves it
    status, back = configure(tenant_id, "global", {})
    assert status == 200 and back["active_version"] == 3 and back["session_ttl_seconds"] == 3600
    assert read(tenant_id, "r000", data) == (values["r000"], 2)
    assert run_rewrap(tenant_id)["migrated"] == 100
    fresh = Function("tenant_data")
    assert all(read(tenant_id, name, fresh) == (v, 3) for name, v in values.items())


def test_operator_key_is_used_as_the_key_wrapping_role(tenant_id, aws, kms_proxy, monkeypatch):
    with disable_iam_authentication():
        key_arn = boto3.client("kms").create_key(Description="operator")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("OPERATOR_KMS_KEY_ARN", key_arn)
    status, body = configure(tenant_id, "operator_kms_aws", {}, function=Function("configure"))
    assert status == 200 and body["provider"] == "operator_kms_aws" and body["session_ttl_seconds"] == 3600
    versions = Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]
    assert versions[0]["key_id"] == key_arn
    unwrapped = Function("unwrap")(invoke_sample("unwrap", tenant_id))
    assert unwrapped["provider"] == "operator_kms_aws" and len(base64.b64decode(unwrapped["key_b64"])) == 32
    # a config for the operator key holds nothing: the key is the deployment's
    status, body = configure(tenant_id, "operator_kms_aws", {"key_arn": key_arn})
    assert (status, body["error"]["code"]) == (400, "invalid_request")


def test_an_alias_arn_is_resolved_and_the_key_arn_recorded(tenant_id, customer):
    with disable_iam_authentication():
        alias = f"alias/tenant-kms-{tenant_id}"
        boto3.client("kms").create_alias(AliasName=alias, TargetKeyId=customer.key_arn)
    alias_arn = customer.key_arn.split(":key/")[0] + f":{alias}"
    status, body = configure(tenant_id, "customer_kms_aws", customer.config(key_arn=alias_arn))
    assert status == 200 and body["config"]["key_arn"] == alias_arn
    versions = Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]
    assert versions[0]["key_id"] == customer.key_arn
    assert "key_b64" in Function("unwrap")(invoke_sample("unwrap", tenant_id))
