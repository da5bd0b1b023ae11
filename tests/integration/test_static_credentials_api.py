"""Static credentials in a configure body: 400 static_credentials_rejected, nothing stored."""

from __future__ import annotations

import pytest
from credential_shapes import BYOK, SHAPES
from support import Function, http_sample, snapshot_tables
from testenv import TABLES

BASE_CONFIGS = {
    "global": {},
    "customer_kms_aws": BYOK,
    "customer_kms_gcp": {
        "key_name": "projects/acme-prod/locations/europe-west1/keyRings/saas/cryptoKeys/tmk",
        "workload_identity_provider": "//iam.googleapis.com/projects/123456789012/locations/global/"
        "workloadIdentityPools/saas-pool/providers/aws-lambda",
    },
    "customer_kms_azure": {
        "key_id": "https://acme-vault.vault.azure.net/keys/tmk",
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    },
}


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("provider", list(BASE_CONFIGS))
def test_static_credentials_are_refused_and_nothing_is_stored(tenant_id, shape, provider):
    body = {"provider": provider, **SHAPES[shape]}
    body["config"] = {**BASE_CONFIGS[provider], **body["config"]}
    before = snapshot_tables(TABLES)
    status, answer = Function("configure").http(http_sample("configure_put_global", tenant_id, body=body))
    assert (status, answer["error"]["code"]) == (400, "static_credentials_rejected")
    assert snapshot_tables(TABLES) == before
