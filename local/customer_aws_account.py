"""The customer's side of BYOK on `make run`'s local AWS account (moto, IAM enforced), with the
customer admin's keys `make run` wrote to .local/customer-aws.json.

    create TENANT < onboarding.json   a KMS key and a role trusting that tenant only; prints the config
    pull-grant TENANT                 delete the role's permissions policy (the kill switch)
    restore-grant TENANT              put it back
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3

CREDENTIALS = Path(__file__).resolve().parent.parent / ".local" / "customer-aws.json"
POLICY_NAME = "tenant-kms-key"
# moto matches KMS actions only against "Resource": "*"; on AWS name the key's ARN.
GRANT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}],
}


def client(service: str):
    return boto3.client(service, **json.loads(CREDENTIALS.read_text()))


def create(tenant_id: str, onboarding: dict) -> dict:
    key_arn = client("kms").create_key(Description=f"Tenant KMS wrap for {tenant_id}")["KeyMetadata"]["Arn"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                # moto compares the caller's ARN exactly: the tenant's session of the key-wrapping
                # role. On AWS the principal is aws.principal_arn, the role itself.
                "Principal": {"AWS": onboarding["gcp"]["principal"]},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": onboarding["aws"]["external_id"]}},
            }
        ],
    }
    iam = client("iam")
    role_arn = iam.create_role(RoleName=f"tenant-kms-{tenant_id}", AssumeRolePolicyDocument=json.dumps(trust))["Role"][
        "Arn"
    ]
    restore_grant(tenant_id)
    return {"region": "us-east-1", "key_arn": key_arn, "role_arn": role_arn}


def pull_grant(tenant_id: str) -> None:
    client("iam").delete_role_policy(RoleName=f"tenant-kms-{tenant_id}", PolicyName=POLICY_NAME)


def restore_grant(tenant_id: str) -> None:
    client("iam").put_role_policy(
        RoleName=f"tenant-kms-{tenant_id}", PolicyName=POLICY_NAME, PolicyDocument=json.dumps(GRANT)
    )


def main(argv: list[str]) -> None:
    command, tenant_id = argv
    if command == "create":
        print(json.dumps({"provider": "customer_kms_aws", "config": create(tenant_id, json.load(sys.stdin))}))
    elif command == "pull-grant":
        pull_grant(tenant_id)
    elif command == "restore-grant":
        restore_grant(tenant_id)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
