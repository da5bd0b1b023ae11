"""customer_kms_aws: configure through the customer's role and key (issue: AWS KMS wrapping)."""

from __future__ import annotations

import boto3
from moto.core.authorization import disable_iam_authentication
from support import Function, http_sample
from testenv import TABLES


def configure_body(provider: str, config: dict) -> dict:
    return {"provider": provider, "config": config}


def test_configure_customer_key_binds_the_wrap_by_encryption_context(tenant_id, customer):
    configure = Function("configure")
    status, view = configure.http(
        http_sample("configure_put_global", tenant_id, body=configure_body("customer_kms_aws", customer.config()))
    )
    assert status == 200, view
    assert view["provider"] == "customer_kms_aws" and view["last_verified_at"] and view["session_ttl_seconds"] == 300

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
            try:
                kms.decrypt(CiphertextBlob=blob, EncryptionContext=wrong)
            except kms.exceptions.InvalidCiphertextException:
                continue
            raise AssertionError(f"decrypted under {wrong}")
