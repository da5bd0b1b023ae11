"""Static credentials are refused anywhere in a configure body (docs/LIFECYCLE.md rule 2)."""

from __future__ import annotations

import pytest
from credential_shapes import AWS_KEY_ID, AWS_SECRET, AZURE_SECRET, BYOK, SHAPES

from tenant_kms.credentials import reject_static_credentials
from tenant_kms.errors import StaticCredentialsRejected


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
