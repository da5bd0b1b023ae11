"""Static credentials are refused anywhere in a configure body (DESIGN rule 2)."""

from __future__ import annotations

import json

import pytest

from tenant_kms.credentials import reject_static_credentials
from tenant_kms.errors import StaticCredentialsRejected

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6" + "A" * 80
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
SERVICE_ACCOUNT = {"type": "service_account", "project_id": "p", "private_key_id": "abc", "private_key": PEM}
AZURE_SECRET = "Xy28Q~abcdefghijklmnopqrstuvwxyz0123456"

BYOK = {
    "region": "us-east-1",
    "key_arn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "role_arn": "arn:aws:iam::111122223333:role/tenant-kms",
    "external_id": "acme-7f3c",
}

SHAPES = {
    "access key id as a value": {"config": {"key_arn": AWS_KEY_ID}},
    "temporary access key id": {"config": {"note": "ASIAY34FZKBOKMUTVV7A"}},
    "access key id field": {"config": {"aws_access_key_id": "anything"}},
    "secret key field": {"config": {"aws_secret_access_key": "anything"}},
    "secret key by shape under any name": {"config": {"blob": AWS_SECRET}},
    "session token field": {"config": {"SessionToken": "x"}},
    "session token by shape": {"config": {"x": SESSION_TOKEN}},
    "credentials object": {"config": {**BYOK, "credentials": {"AccessKeyId": "x", "SecretAccessKey": "y"}}},
    "nested in a list": {"config": {"keys": [{"ok": 1}, {"deep": [AWS_KEY_ID]}]}},
    "nested in dicts": {"config": {"a": {"b": {"c": {"secretAccessKey": "z"}}}}},
    "top-level, outside config": {"provider": "global", "config": {}, "extra": {"aws_session_token": "t"}},
    "service account JSON object": {"config": SERVICE_ACCOUNT},
    "service account JSON as a string": {"config": {"key_file": json.dumps(SERVICE_ACCOUNT)}},
    "private_key field": {"config": {"private_key": "abc"}},
    "PEM block": {"config": {"cert": PEM}},
    "certificate field": {"config": {"client_certificate": "MIIB"}},
    "azure client secret field": {"config": {"client_secret": "s"}},
    "azure client secret by shape": {"config": {"value": AZURE_SECRET}},
    "password field": {"config": {"password": "hunter2"}},
    "key named like a secret in camel case": {"config": {"clientSecret": "s"}},
}


@pytest.mark.parametrize("body", list(SHAPES.values()), ids=list(SHAPES))
def test_static_credential_shapes_are_refused(body):
    with pytest.raises(StaticCredentialsRejected) as refused:
        reject_static_credentials(body)
    # The message names where, never what.
    message = refused.value.message
    for secret in (AWS_KEY_ID, AWS_SECRET, "hunter2", AZURE_SECRET, "MIIEvQ"):
        assert secret not in message


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "global", "config": {}},
        {"provider": "customer_kms_aws", "config": BYOK},
        {"provider": "customer_kms_aws", "config": {**BYOK, "external_id": "0f8fad5b-d9cb-469f-a165-70867728950e"}},
        {
            "provider": "customer_kms_gcp",
            "config": {
                "key_name": "projects/acme-prod/locations/europe-west1/keyRings/saas/cryptoKeys/tmk",
                "workload_identity_provider": "//iam.googleapis.com/projects/123456789012/locations/global/"
                "workloadIdentityPools/saas-pool/providers/aws-provider",
                "service_account_email": "tenant-kms@acme-prod.iam.gserviceaccount.com",
            },
        },
        {
            "provider": "customer_kms_azure",
            "config": {
                "key_id": "https://acme-vault.vault.azure.net/keys/tmk/0123456789abcdef0123456789abcdef",
                "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                "client_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            },
        },
    ],
)
def test_reference_only_configs_pass(body):
    reject_static_credentials(body)
