"""The AWS account a deployment runs in, and a customer's account, on moto (KMS, STS, IAM) with
IAM enforced, for `make run`'s local BYOK walkthrough: the functions call with an IAM user's keys
that may only become sessions of the key-wrapping role, as the deployed functions' role may."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3

ACCOUNT = "123456789012"  # moto's default account
WRAPPING_ROLE = "tenant-kms-key-wrapping"


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def setup(endpoint: str, customer_file: Path) -> dict[str, str]:
    """Create both identities (before enforcement starts), write the customer admin's keys to
    ``customer_file`` and answer the functions' AWS settings."""
    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
    )
    iam.create_user(UserName="tenant-kms-function")
    user_arn = f"arn:aws:iam::{ACCOUNT}:user/tenant-kms-function"
    wrapping = iam.create_role(
        RoleName=WRAPPING_ROLE,
        AssumeRolePolicyDocument=_policy(
            {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"}
        ),
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=WRAPPING_ROLE,
        PolicyName="wrap",
        PolicyDocument=_policy(
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/*"},
            {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"},
        ),
    )
    iam.put_user_policy(
        UserName="tenant-kms-function",
        PolicyName="function-role",
        PolicyDocument=_policy(
            {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": wrapping},
            {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"},  # the job and sweep queues
        ),
    )
    function_keys = iam.create_access_key(UserName="tenant-kms-function")["AccessKey"]

    iam.create_user(UserName="customer-admin")
    iam.put_user_policy(
        UserName="customer-admin",
        PolicyName="admin",
        PolicyDocument=_policy({"Effect": "Allow", "Action": "*", "Resource": "*"}),
    )
    admin_keys = iam.create_access_key(UserName="customer-admin")["AccessKey"]
    customer_file.parent.mkdir(parents=True, exist_ok=True)
    customer_file.write_text(
        json.dumps(
            {
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "aws_access_key_id": admin_keys["AccessKeyId"],
                "aws_secret_access_key": admin_keys["SecretAccessKey"],
            }
        )
    )
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": function_keys["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": function_keys["SecretAccessKey"],
        "KEY_WRAPPING_ROLE_ARN": wrapping,
    }


def enforce() -> None:
    """From here on every request to moto is checked against IAM policies."""
    from moto import settings

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # for the rest of the process's life
