"""No tenant can use a key another tenant's customer trusts, even knowing every identifier
of it: the external id is issued by the service, and every call carries the tenant's own
session of the key-wrapping role. moto with IAM enforcement decides the trust; its STS
backend shows every session it issued, as CloudTrail would."""

from __future__ import annotations

import json

import boto3
from conftest import ACCOUNT, make_customer, onboarding
from moto.core.authorization import disable_iam_authentication
from moto.sts.models import sts_backends
from support import Function, http_sample, invoke_sample, snapshot_tables
from testenv import TABLES
from world import configure, view


def sessions_of(role_arn: str) -> list[str]:
    """Every session moto's STS issued for a role (the CloudTrail AssumeRole events)."""
    return [r.session_name for r in sts_backends[ACCOUNT]["aws"].assumed_roles if r.role_arn == role_arn]


def test_the_onboarding_answer_is_stable_per_tenant_and_names_only_that_tenant(tenant_id, aws):
    other = f"{tenant_id}-b"
    first, again, theirs = onboarding(tenant_id), onboarding(tenant_id), onboarding(other)
    assert first == again
    assert first["tenant_id"] == tenant_id and first["aws"]["principal_arn"] == aws.wrapping_role_arn
    role_name = aws.wrapping_role_arn.rsplit("/", 1)[1]
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{tenant_id}"
    assert first["gcp"] == {"principal": session, "attribute_condition": f"assertion.arn == '{session}'"}
    assert first["azure"]["subject"] == f"tenant:{tenant_id}"
    assert first["azure"]["audience"] == "api://AzureADTokenExchange"
    assert first["aws"]["external_id"] != theirs["aws"]["external_id"]
    assert first["gcp"]["principal"] != theirs["gcp"]["principal"]
    assert first["azure"]["subject"] != theirs["azure"]["subject"]


def test_another_tenant_cannot_use_a_customer_key_even_with_its_exact_config(tenant_id, aws, kms_proxy):
    # Given tenant A on its customer's key, whose role trusts A's session and A's issued id
    tenant_a, tenant_b = tenant_id, f"{tenant_id}-b"
    customer = make_customer(aws, tenant_a)
    a_config = customer.config(external_id=customer.external_ids[tenant_a])
    assert configure(tenant_a, "customer_kms_aws", a_config)[0] == 200
    assert configure(tenant_b, "global", {})[0] == 200
    onboarding(tenant_b)  # B has its own issued id
    issued_to_a = sessions_of(customer.role_arn)
    assert set(issued_to_a) == {"tenant-kms-" + tenant_a}
    kms_proxy.reset()
    with disable_iam_authentication():
        before = snapshot_tables(TABLES)

    # When B's admin submits A's exact config, A's external id included: refused up front
    status, body = configure(tenant_b, "customer_kms_aws", a_config)
    assert (status, body["error"]["code"]) == (400, "invalid_request"), body
    assert "external_id" in body["error"]["message"] and a_config["external_id"] not in body["error"]["message"]

    # And without the external id: B's own session and id reach A's role, whose trust refuses
    status, body = configure(tenant_b, "customer_kms_aws", customer.config())
    assert (status, body["error"]["code"]) == (422, "verification_failed"), body
    assert "AccessDenied" in body["error"]["message"]

    # Then nothing of A's key was used: no session of A's role for anyone, no KMS call at all
    assert sessions_of(customer.role_arn) == issued_to_a
    assert sum(kms_proxy.calls.values()) == 0
    with disable_iam_authentication():
        after = snapshot_tables(TABLES)
    for row in after[TABLES["TenantConfigTable"]]:  # the refused probe is noted on B's row, nothing else
        if row["tenant_id"]["S"] == tenant_b:
            assert "customer_kms_aws" in row.pop("last_verify_error")["S"]
    assert after == before
    assert view(tenant_b)["provider"] == "global"
    # And A still works
    assert "key_b64" in Function("unwrap")(invoke_sample("unwrap", tenant_a))


def test_the_adapter_uses_the_issued_id_whatever_a_stored_config_says(tenant_id, aws, kms_proxy):
    customer = make_customer(aws, tenant_id)
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    assert view(tenant_id)["config"]["external_id"] == customer.external_ids[tenant_id]
    # A version row edited to carry another id still unwraps with the issued one
    with disable_iam_authentication():
        dynamodb = boto3.client("dynamodb")
        key = {"tenant_id": {"S": tenant_id}, "version": {"N": "1"}}
        item = dynamodb.get_item(TableName=TABLES["KeyVersionTable"], Key=key)["Item"]
        stored = json.loads(item["provider_config"]["S"])
        dynamodb.update_item(
            TableName=TABLES["KeyVersionTable"],
            Key=key,
            UpdateExpression="SET provider_config = :edited",
            ExpressionAttributeValues={":edited": {"S": json.dumps({**stored, "external_id": "someone-elses-id"})}},
        )
    assert "key_b64" in Function("unwrap")(invoke_sample("unwrap", tenant_id))
    assert {r.external_id for r in sts_backends[ACCOUNT]["aws"].assumed_roles if r.role_arn == customer.role_arn} == {
        customer.external_ids[tenant_id]
    }


def test_a_tenant_that_never_onboarded_is_told_to(tenant_id, aws, kms_proxy):
    customer = make_customer(aws, f"{tenant_id}-b")
    kms_proxy.reset()
    status, body = configure(tenant_id, "customer_kms_aws", customer.config())
    assert (status, body["error"]["code"]) == (422, "verification_failed"), body
    assert "onboarding" in body["error"]["message"]
    assert sum(kms_proxy.calls.values()) == 0


def test_erasure_destroys_the_issued_external_id(tenant_id, aws):
    issued = onboarding(tenant_id)["aws"]["external_id"]
    status, _ = Function("erase").http(http_sample("erase_delete", tenant_id))
    assert status == 204
    with disable_iam_authentication():
        remaining = snapshot_tables(TABLES)[TABLES["KeyVersionTable"]]
    assert not [row for row in remaining if row["tenant_id"]["S"].startswith(f"{tenant_id}#")]
    assert onboarding(tenant_id)["aws"]["external_id"] != issued


def test_losing_our_own_credentials_is_unavailable_and_never_seals(tenant_id, aws, kms_proxy):
    # Given a customer tenant in use
    customer = make_customer(aws, tenant_id)
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    assert "key_b64" in Function("unwrap")(invoke_sample("unwrap", tenant_id))

    # When the function's own access key stops working (a fresh instance must become the
    # tenant's session of the key-wrapping role first): STS answers InvalidClientTokenId
    with disable_iam_authentication():
        iam = boto3.client("iam")
        user = aws.user_arn.rsplit("/", 1)[1]
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
    kms_proxy.reset()
    answer = Function("unwrap")(invoke_sample("unwrap", tenant_id))

    # Then: 503, the tenant stays active, and no key operation was attempted
    assert answer["error"]["code"] == "provider_unavailable", answer
    assert "key-wrapping role" in answer["error"]["message"]
    assert view(tenant_id)["status"] == "active"
    assert sum(kms_proxy.calls.values()) == 0


def test_the_customer_trust_refusing_the_tenant_seals_it(tenant_id, aws):
    customer = make_customer(aws, tenant_id)
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    # The customer's trust now names another tenant only: our next AssumeRole is refused
    other = make_customer(aws, f"{tenant_id}-b")
    with disable_iam_authentication():
        trust = boto3.client("iam").get_role(RoleName=other.role_name)["Role"]["AssumeRolePolicyDocument"]
        boto3.client("iam").update_assume_role_policy(RoleName=customer.role_name, PolicyDocument=json.dumps(trust))
    answer = Function("unwrap")(invoke_sample("unwrap", tenant_id))  # a fresh instance: no session cached
    assert answer["error"]["code"] == "sealed", answer
    assert "AssumeRole refused: AccessDenied" in view(tenant_id)["sealed_reason"]


def test_racing_first_requests_agree_on_one_external_id(tenant_id, aws):
    from concurrent.futures import ThreadPoolExecutor

    from tenant_kms.identity import issue_external_id

    Function("configure")  # binds the models to this run's tables
    with ThreadPoolExecutor(max_workers=8) as pool:
        issued = set(pool.map(lambda _: issue_external_id(tenant_id, "2026-01-01T00:00:00.000Z"), range(16)))
    assert len(issued) == 1
    assert onboarding(tenant_id)["aws"]["external_id"] in issued
