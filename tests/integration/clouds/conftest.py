"""Cloud KMS and Key Vault through wire fakes on loopback that the real SDK clients talk to.

Functions build their adapters with the production registry. Azure's and Google's token and
vault hosts are answered by name over TLS verified against the test certificate (see
azure_world and gcp_world); Cloud KMS is reached as deployed, at Google's endpoint over TLS
with call credentials, through gRPC's standard proxy and root-certificate settings."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from azure_world import AzureWorld
from fakes import cloud_kms
from fakes.aws_sts import FUNCTION_ROLE, FakeSts
from fakes.azure_hosts import ENTRA_HOST, certificate, resolve_to_loopback
from fakes.cloud_kms import FakeCloudKms
from fakes.connect_proxy import ConnectProxy
from fakes.entra_id import AssertionSigner, FakeEntraId
from fakes.google_iam import IAM_CREDENTIALS_HOST, STS_HOST, FakeGoogleIam
from fakes.key_vault import FakeKeyVault
from faults import FaultProxy
from gcp_world import GcpWorld
from support import Function, sample

ISSUER = "https://federation.tenant-kms.example.com"


@pytest.fixture(scope="session")
def tls():
    """One test CA certificate for every host the fakes answer by name.

    gRPC reads its default roots once per process, at the first TLS channel: the setting is
    made here, before any, and left for the session."""
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = certificate(Path(directory), (STS_HOST, IAM_CREDENTIALS_HOST, cloud_kms.HOST))
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(cert_file)
        yield cert_file, key_file


@pytest.fixture(scope="session")
def google_fakes(tls, moto_server):
    cert_file, key_file = tls
    iam = FakeGoogleIam(cert_file, key_file, moto_server)
    kms = FakeCloudKms(iam.principal_of, cert_file, key_file)
    proxy = ConnectProxy({f"{cloud_kms.HOST}:443": kms.port})
    yield iam, kms, proxy, moto_server
    proxy.close()
    kms.stop()
    iam.stop()


@pytest.fixture
def gcp(google_fakes, tls, monkeypatch) -> GcpWorld:
    """Google reached as deployed; each tenant federates as its own session of the key-wrapping role."""
    iam, kms, proxy, moto_server = google_fakes
    kms.fail_always(None)
    iam.clear_faults()
    iam.clock = time.time
    world = GcpWorld(iam, kms, moto_server)
    world.proxy = proxy
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls[0]))
    monkeypatch.setenv("grpc_proxy", proxy.url)
    for name, value in world.operator_settings().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server)
    with resolve_to_loopback({STS_HOST: iam.port, IAM_CREDENTIALS_HOST: iam.port}):
        yield world


@pytest.fixture(scope="session")
def azure_fakes(tls, moto_server):
    cert_file, key_file = tls
    entra = FakeEntraId(cert_file, key_file)
    vault = FakeKeyVault(entra, cert_file, key_file)
    # This account's outbound federation issuer, whose tokens name the key-wrapping role.
    sts_tokens = AssertionSigner(f"https://{uuid.uuid4()}.tokens.sts.global.api.aws", subject=FUNCTION_ROLE)
    entra.trust_issuer(sts_tokens)
    sts = FakeSts(moto_server, sts_tokens)
    yield entra, vault, sts_tokens, sts, cert_file
    sts.stop()
    vault.stop()
    entra.stop()


@pytest.fixture(scope="session")
def federation_kms(moto_server):
    """KMS (moto) behind a fault proxy: the federation key that signs tenants' assertions."""
    proxy = FaultProxy(moto_server)
    yield proxy
    proxy.close()


@pytest.fixture
def azure(azure_fakes, moto_server, federation_kms, monkeypatch) -> AzureWorld:
    """Azure reached by name over verified TLS, every assertion made as deployed: a tenant's
    is the deployment's own JWT (signed with kms:Sign on moto), which Entra checks against the
    JWKS the deployment serves; the operator's is the key-wrapping role's STS web identity
    token (GetWebIdentityToken, answered in front of moto, which lacks it): the function's own
    role's, or the key-wrapping role's where a test sets KEY_WRAPPING_ROLE_ARN."""
    entra, vault, sts_tokens, sts, cert_file = azure_fakes
    entra.fail_always(None)
    vault.fail_always(None)
    vault.retry_after_seconds = 0
    federation_kms.reset()
    sts.fail_with = None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", federation_kms.endpoint)
    key = boto3.client("kms").create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("FEDERATION_SIGNING_KEY_ID", key)
    monkeypatch.setenv("FEDERATION_ISSUER_URL", ISSUER)
    jwks = Function("federation")(sample("federation_jwks"))
    assert jwks["statusCode"] == 200, jwks
    entra.trust_jwks(ISSUER, json.loads(jwks["body"]))

    world = AzureWorld(entra, vault, ISSUER, sts_tokens, federation_kms)
    world.sts = sts
    for name, value in world.operator_settings().items():
        monkeypatch.setenv(name, value)
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
