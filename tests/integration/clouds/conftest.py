"""Cloud KMS and Key Vault through wire fakes on loopback that the real SDK clients talk to.

A Function's registry gets factories that build the real adapters with clients pointed at
the fakes (the deployed factories build the same adapters with federated credentials)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from fakes.cloud_kms import FakeCloudKms
from fakes.key_vault import FakeCredential, FakeKeyVault
from google.api_core import retry as gretry
from support import Function

from kms_wrapping.azure_kv import AzureKeyVaultWrapper
from kms_wrapping.gcp_kms import TRANSIENT, GcpKmsWrapper

WIF = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/saas-pool/providers/aws-lambda"
ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
APP = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.fixture(scope="session")
def cloud_kms():
    fake = FakeCloudKms()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def key_vault():
    fake = FakeKeyVault()
    yield fake
    fake.stop()


@dataclass
class Clouds:
    cloud_kms: FakeCloudKms
    key_vault: FakeKeyVault
    credential: FakeCredential
    operator_gcp_key: str
    operator_azure_key: str

    def gcp_config(self) -> dict:
        name = f"projects/acme-prod/locations/europe-west1/keyRings/saas/cryptoKeys/tmk-{uuid.uuid4().hex[:8]}"
        self.cloud_kms.create_key(name)
        return {"key_name": name, "workload_identity_provider": WIF}

    def azure_config(self) -> dict:
        name = f"tmk-{uuid.uuid4().hex[:8]}"
        self.key_vault.create_key(name)
        return {
            "key_id": f"https://acme-vault.vault.azure.net/keys/{name}",
            "tenant_id": ENTRA_TENANT,
            "client_id": APP,
        }

    def config(self, provider: str) -> dict:
        return {"customer_kms_gcp": self.gcp_config, "customer_kms_azure": self.azure_config}.get(provider, dict)()

    def vault_name(self, config: dict) -> str:
        return config["key_id"].rsplit("/keys/", 1)[1].split("/")[0]

    def function(self, name: str) -> Function:
        function = Function(name)
        registry = function.service.registry
        fast = gretry.Retry(predicate=gretry.if_exception_type(*TRANSIENT), initial=0.01, maximum=0.05, timeout=1)

        def gcp(provider: str, key_name: str) -> GcpKmsWrapper:
            return GcpKmsWrapper(
                provider=provider, key_name=key_name, kms_client=self.cloud_kms.client(), retry=fast, timeout_seconds=2
            )

        def azure(provider: str, key_id: str) -> AzureKeyVaultWrapper:
            local = f"{self.key_vault.url}/keys/{key_id.rsplit('/keys/', 1)[1]}"  # the vault's host is the fake's
            return AzureKeyVaultWrapper(
                provider=provider,
                key_id=local,
                credential=self.credential,
                client_options=self.key_vault.client_options(),
            )

        registry.register("customer_kms_gcp", lambda config, _t: gcp("customer_kms_gcp", config["key_name"]))
        registry.register("operator_kms_gcp", lambda _c, _t: gcp("operator_kms_gcp", self.operator_gcp_key))
        registry.register("customer_kms_azure", lambda config, _t: azure("customer_kms_azure", config["key_id"]))
        registry.register("operator_kms_azure", lambda _c, _t: azure("operator_kms_azure", self.operator_azure_key))
        return function


@pytest.fixture
def clouds(cloud_kms, key_vault) -> Clouds:
    cloud_kms.fail_always(None)
    key_vault.fail_always(None)
    operator_gcp = cloud_kms.create_key(
        f"projects/operator/locations/global/keyRings/tenant-kms/cryptoKeys/op-{uuid.uuid4().hex[:6]}"
    )
    operator_azure = key_vault.create_key(f"op-{uuid.uuid4().hex[:6]}").replace(
        key_vault.url, "https://op.vault.azure.net"
    )
    return Clouds(cloud_kms, key_vault, FakeCredential(), operator_gcp, operator_azure)
