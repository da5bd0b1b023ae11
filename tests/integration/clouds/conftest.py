"""Cloud KMS and Key Vault through wire fakes on loopback that the real SDK clients talk to.

Functions build their adapters with the production registry. Azure's and Google's token and
vault hosts are answered by name over TLS verified against the test certificate (see
azure_world and gcp_world); Cloud KMS is reached over gRPC with call credentials."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure_world import AzureWorld
from fakes.azure_hosts import ENTRA_HOST, certificate, resolve_to_loopback
from fakes.cloud_kms import FakeCloudKms
from fakes.entra_id import AssertionSigner, FakeEntraId
from fakes.google_iam import IAM_CREDENTIALS_HOST, STS_HOST, FakeGoogleIam
from fakes.key_vault import FakeKeyVault
from gcp_world import GcpWorld
from support import Function


@pytest.fixture(scope="session")
def tls():
    """One test CA certificate for every host the fakes answer by name."""
    with tempfile.TemporaryDirectory() as directory:
        yield certificate(Path(directory), (STS_HOST, IAM_CREDENTIALS_HOST))


@pytest.fixture(scope="session")
def google_fakes(tls, moto_server):
    cert_file, key_file = tls
    iam = FakeGoogleIam(cert_file, key_file, moto_server)
    kms = FakeCloudKms(iam.principal_of)
    yield iam, kms, moto_server
    kms.stop()
    iam.stop()


@pytest.fixture
def gcp(google_fakes, tls, monkeypatch) -> GcpWorld:
    """Google reached as deployed; each tenant federates as its own session of the key-wrapping role."""
    iam, kms, moto_server = google_fakes
    kms.fail_always(None)
    iam.clear_faults()
    world = GcpWorld(iam, kms, moto_server)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls[0]))
    for name, value in world.operator_settings().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server)
    with resolve_to_loopback({STS_HOST: iam.port, IAM_CREDENTIALS_HOST: iam.port}):
        yield world


@pytest.fixture(scope="session")
def azure_fakes(tls):
    cert_file, key_file = tls
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
    gcp: GcpWorld
    azure: AzureWorld

    @property
    def cloud_kms(self) -> FakeCloudKms:
        return self.gcp.kms

    def config(self, provider: str, tenant_id: str = "") -> dict:
        if provider == "customer_kms_azure":
            return self.azure.customer(tenant_id).config
        if provider == "customer_kms_gcp":
            return self.gcp.customer(tenant_id).config
        return {}

    @staticmethod
    def function(name: str) -> Function:
        return Function(name)


@pytest.fixture
def clouds(gcp, azure) -> Clouds:
    return Clouds(gcp, azure)
