"""AWS KMS, STS and IAM from moto on loopback, with IAM enforcement on: the function calls
with an IAM user's keys (its "own role"), which may only become a session of the key-wrapping
role; the customer's role trusts one tenant's session of that role with that tenant's issued
external id, and the customer's key is usable only while the role's policy allows it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import boto3
import pytest
from faults import FaultProxy
from moto.core.authorization import disable_iam_authentication, enable_iam_authentication
from support import Function, http_sample

ACCOUNT = "123456789012"  # moto's default account


@dataclass
class CustomerAccount:
    key_arn: str
    role_arn: str
    role_name: str
    external_ids: dict[str, str]  # tenant -> the id the service issued it
    policy: dict

    def config(self, **changes) -> dict:
        return {"region": "us-east-1", "key_arn": self.key_arn, "role_arn": self.role_arn, **changes}

    def pull_grant(self) -> None:
        with disable_iam_authentication():
            boto3.client("iam").delete_role_policy(RoleName=self.role_name, PolicyName="tenant-kms-key")

    def restore_grant(self) -> None:
        with disable_iam_authentication():
            boto3.client("iam").put_role_policy(
                RoleName=self.role_name, PolicyName="tenant-kms-key", PolicyDocument=json.dumps(self.policy)
            )


@pytest.fixture(scope="session")
def kms_proxy(moto_server):
    proxy = FaultProxy(moto_server)
    yield proxy
    proxy.close()


@pytest.fixture
def aws(moto_server, kms_proxy, monkeypatch):
    """moto for every AWS service but DynamoDB; KMS through the fault proxy; IAM enforced."""
    kms_proxy.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", kms_proxy.endpoint)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    suffix = uuid.uuid4().hex[:8]
    with disable_iam_authentication():
        iam = boto3.client("iam")
        user = f"tenant-kms-function-{suffix}"
        iam.create_user(UserName=user)
        user_arn = f"arn:aws:iam::{ACCOUNT}:user/{user}"
        wrapping = iam.create_role(
            RoleName=f"tkms-{suffix}-key-wrapping",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"},
                    ],
                }
            ),
        )["Role"]
        # The function itself may only become a session of the key-wrapping role, and send and
        # take the sweeps' units (its queues' send policy, and the event source's poller rights).
        iam.put_user_policy(
            UserName=user,
            PolicyName="function-role",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["sts:AssumeRole", "sts:TagSession"],
                            "Resource": wrapping["Arn"],
                        },
                        {
                            "Effect": "Allow",
                            "Action": [
                                "sqs:SendMessage*",  # SAM's SQSSendMessagePolicy
                                "sqs:ReceiveMessage",
                                "sqs:DeleteMessage*",
                                "sqs:ChangeMessageVisibility*",
                                "sqs:GetQueueAttributes",
                            ],
                            "Resource": "*",
                        },
                    ],
                }
            ),
        )
        iam.put_role_policy(
            RoleName=wrapping["RoleName"],
            PolicyName="wrap",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/*"},
                        {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"},
                        {"Effect": "Allow", "Action": ["kms:Sign", "kms:GetPublicKey"], "Resource": "*"},
                    ],
                }
            ),
        )
        keys = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["SecretAccessKey"])
    monkeypatch.setenv("KEY_WRAPPING_ROLE_ARN", wrapping["Arn"])
    with enable_iam_authentication():
        yield FunctionIdentity(suffix=suffix, user_arn=user_arn, wrapping_role_arn=wrapping["Arn"])


@dataclass
class FunctionIdentity:
    suffix: str
    user_arn: str
    wrapping_role_arn: str


def onboarding(tenant_id: str) -> dict:
    status, answer = Function("configure").http(http_sample("configure_onboarding_get", tenant_id))
    assert status == 200, answer
    return answer


def trust_for(tenants: dict[str, dict]) -> dict:
    """What a customer's role trusts: the named tenants' sessions with their external ids.
    moto compares the caller's ARN with the principal exactly (AWS would also accept the
    role's ARN as principal), so the session ARNs from the onboarding answers are named; and
    moto denies on the first statement whose principal does not match, so several tenants
    share one statement (on AWS, one statement per tenant would pair each id with its session)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": [answer["gcp"]["principal"] for answer in tenants.values()]},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": [a["aws"]["external_id"] for a in tenants.values()]}},
            }
        ],
    }


def make_customer(
    function: FunctionIdentity, tenants, *, kms_actions=("kms:Encrypt", "kms:Decrypt"), region="us-east-1"
) -> CustomerAccount:
    """A customer account whose role trusts ``tenants`` (a tenant id or several) and no other."""
    tenants = [tenants] if isinstance(tenants, str) else list(tenants)
    answers = {tenant: onboarding(tenant) for tenant in tenants}
    with disable_iam_authentication():
        key_arn = boto3.client("kms", region_name=region).create_key(Description="customer TMK wrap")["KeyMetadata"][
            "Arn"
        ]
        iam = boto3.client("iam")
        name = f"customer-tenant-kms-{function.suffix}-{uuid.uuid4().hex[:4]}"
        role_arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust_for(answers)))["Role"][
            "Arn"
        ]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(kms_actions), "Resource": "*"}],
        }
        iam.put_role_policy(RoleName=name, PolicyName="tenant-kms-key", PolicyDocument=json.dumps(policy))
    return CustomerAccount(
        key_arn=key_arn,
        role_arn=role_arn,
        role_name=name,
        external_ids={tenant: answer["aws"]["external_id"] for tenant, answer in answers.items()},
        policy=policy,
    )


@pytest.fixture
def customer(aws, tenant_id):
    return make_customer(aws, tenant_id)
