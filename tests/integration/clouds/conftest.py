"""Cloud KMS and Key Vault through wire fakes on loopback that the real SDK clients talk to.

For GCP a Function's registry gets factories that build the real adapters with clients
pointed at the fake. Azure tenants are served by the production registry: the fakes answer
Azure's own host names over TLS (see azure_world)."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure_world import AzureWorld
from fakes.azure_hosts import ENTRA_HOST, certificate, resolve_to_loopback
from fakes.cloud_kms import FakeCloudKms
from fakes.entra_id import AssertionSigner, FakeEntraId
from fakes.key_vault import FakeKeyVault
from google.api_core import retry as gretry
from support import Function

from kms_wrapping.gcp_kms import TRANSIENT, GcpKmsWrapper

WIF = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/saas-pool/providers/aws-lambda"


@pytest.fixture(scope="session")
def cloud_kms():
    fake = FakeCloudKms()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def azure_fakes():
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = certificate(Path(directory))
        entra = FakeEntraId(cert_file, key_file)
        vault = FakeKeyVault(entra, cert_file, key_file)
        signer = AssertionSigner()
        entra.trust_issuer(signer)
        yield entra, vault, signer, cert_file
        vault.stop()
        entra.stop()


@pytest.fixture
def azure(azure_fakes, monkeypatch) -> AzureWorld:
    """Azure reached by name over verified TLS; tenants' assertions from the test issuer."""
    entra, vault, signer, cert_file = azure_fakes
    entra.fail_always(None)
    vault.fail_always(None)
    signer.failing = None
    world = AzureWorld(entra, vault, signer)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    for name, value in world.operator_settings().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("tenant_kms.providers._azure_assertion_source", lambda _settings, tenant: signer.source(tenant))
    routes = {"*.vault.azure.net": vault.port, "*.managedhsm.azure.net": vault.port, ENTRA_HOST: entra.port}
    with resolve_to_loopback(routes):
        yield world


@dataclass
class Clouds:
    cloud_kms: FakeCloudKms
    azure: AzureWorld
    operator_gcp_key: str

    def gcp_config(self) -> dict:
        name = f"projects/acme-prod/locations/europe-west1/keyRings/saas/cryptoKeys/tmk-{uuid.uuid4().hex[:8]}"
        self.cloud_kms.create_key(name)
        return {"key_name": name, "workload_identity_provider": WIF}

    def config(self, provider: str, tenant_id: str = "") -> dict:
        if provider == "customer_kms_azure":
            return self.azure.customer(tenant_id).config
        return {"customer_kms_gcp": self.gcp_config}.get(provider, dict)()

    def function(self, name: str) -> Function:
        function = Function(name)
        registry = function.service.registry
        fast = gretry.Retry(predicate=gretry.if_exception_type(*TRANSIENT), initial=0.01, maximum=0.05, timeout=1)

        def gcp(provider: str, key_name: str) -> GcpKmsWrapper:
            return GcpKmsWrapper(
                provider=provider, key_name=key_name, kms_client=self.cloud_kms.client(), retry=fast, timeout_seconds=2
            )

        registry.register("customer_kms_gcp", lambda config, _t: gcp("customer_kms_gcp", config["key_name"]))
        registry.register("operator_kms_gcp", lambda _c, _t: gcp("operator_kms_gcp", self.operator_gcp_key))
        return function


@pytest.fixture
def clouds(cloud_kms, azure) -> Clouds:
    cloud_kms.fail_always(None)
    operator_gcp = cloud_kms.create_key(
        f"projects/operator/locations/global/keyRings/tenant-kms/cryptoKeys/op-{uuid.uuid4().hex[:6]}"
    )
    return Clouds(cloud_kms, azure, operator_gcp)
