"""AWS KMS, STS and IAM from moto on loopback, with IAM enforcement on: the function calls
with an IAM user's keys (its "own role"), the customer's role trusts it only with the
external id, and the customer's key is usable only while the role's policy allows it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import boto3
import pytest
from faults import FaultProxy
from moto.core.authorization import disable_iam_authentication, enable_iam_authentication

ACCOUNT = "123456789012"  # moto's default account


@dataclass
class CustomerAccount:
    key_arn: str
    role_arn: str
    role_name: str
    external_id: str
    policy: dict

    def config(self, **changes) -> dict:
        return {
            "region": "us-east-1",
            "key_arn": self.key_arn,
            "role_arn": self.role_arn,
            "external_id": self.external_id,
            **changes,
        }

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
        iam.put_user_policy(
            UserName=user,
            PolicyName="function-role",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/*"},
                        {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"},
                    ],
                }
            ),
        )
        keys = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["SecretAccessKey"])
    with enable_iam_authentication():
        yield FunctionIdentity(suffix=suffix, user_arn=f"arn:aws:iam::{ACCOUNT}:user/{user}")


@dataclass
class FunctionIdentity:
    suffix: str
    user_arn: str


def make_customer(function: FunctionIdentity, *, kms_actions=("kms:Encrypt", "kms:Decrypt"), region="us-east-1"):
    with disable_iam_authentication():
        key_arn = boto3.client("kms", region_name=region).create_key(Description="customer TMK wrap")["KeyMetadata"][
            "Arn"
        ]
        iam = boto3.client("iam")
        name = f"customer-tenant-kms-{function.suffix}-{uuid.uuid4().hex[:4]}"
        external_id = f"ext-{uuid.uuid4().hex}"
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # moto matches user principals, not the account root; the condition is the real check.
                    "Effect": "Allow",
                    "Principal": {"AWS": function.user_arn},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
                }
            ],
        }
        role_arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(kms_actions), "Resource": "*"}],
        }
        iam.put_role_policy(RoleName=name, PolicyName="tenant-kms-key", PolicyDocument=json.dumps(policy))
    return CustomerAccount(key_arn=key_arn, role_arn=role_arn, role_name=name, external_id=external_id, policy=policy)


@pytest.fixture
def customer(aws):
    return make_customer(aws)
