"""How the GCP and Azure adapters get credentials: federation from the function's AWS
identity, never a key file, client secret or certificate."""

from __future__ import annotations

import ast
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from kms_wrapping.azure_kv import (
    ENTRA_AUDIENCE,
    TokenUnavailable,
    federated_credential,
    web_identity_token_source,
)
from kms_wrapping.gcp_kms import AWS_SUBJECT_TOKEN_TYPE, federated_credentials

WIF = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/saas/providers/aws-lambda"
PROVIDERS = Path(__file__).resolve().parents[2] / "layers/providers/kms_wrapping"


def test_gcp_uses_an_aws_type_external_account_for_the_tenants_provider():
    credentials = federated_credentials(
        workload_identity_provider=WIF,
        service_account_email="tenant-kms@acme-prod.iam.gserviceaccount.com",
        aws_region="eu-west-1",
    )
    info = credentials.info
    assert info["type"] == "external_account" and info["audience"] == WIF
    assert info["subject_token_type"] == AWS_SUBJECT_TOKEN_TYPE
    assert info["credential_source"]["environment_id"] == "aws1"
    assert "sts.eu-west-1.amazonaws.com" in info["credential_source"]["regional_cred_verification_url"]
    assert info["service_account_impersonation_url"].endswith(
        "tenant-kms@acme-prod.iam.gserviceaccount.com:generateAccessToken"
    )
    assert "private_key" not in str(info)


def test_gcp_without_impersonation_uses_the_federated_token_directly():
    info = federated_credentials(
        workload_identity_provider=WIF, service_account_email=None, aws_region="us-east-1"
    ).info
    assert "service_account_impersonation_url" not in info


def test_azure_assertion_is_an_sts_web_identity_token_for_entra():
    sts = boto3.session.Session().client("sts", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    with Stubber(sts) as stub:
        stub.add_response(
            "get_web_identity_token",
            {"WebIdentityToken": "eyJhbGciOiJSUzI1NiJ9.e30.sig"},
            {"Audience": [ENTRA_AUDIENCE], "SigningAlgorithm": "RS256", "DurationSeconds": 300},
        )
        assert web_identity_token_source(sts)() == "eyJhbGciOiJSUzI1NiJ9.e30.sig"
        stub.assert_no_pending_responses()


def test_a_failing_token_source_is_our_fault_not_an_authentication_refusal():
    # azure-identity would report a ClientAuthenticationError as the customer's refusal.
    sts = boto3.session.Session().client("sts", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    credential = federated_credential(
        tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
        client_id="0f8fad5b-d9cb-469f-a165-70867728950e",
        token_source=web_identity_token_source(sts),
    )
    with Stubber(sts) as stub:
        stub.add_client_error("get_web_identity_token", "Throttling", "slow down", 400)
        with pytest.raises(TokenUnavailable):
            credential.get_token("https://vault.azure.net/.default")


def test_azure_credential_is_a_client_assertion_credential():
    from azure.identity import ClientAssertionCredential

    credential = federated_credential(
        tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
        client_id="0f8fad5b-d9cb-469f-a165-70867728950e",
        token_source=lambda: "token",
    )
    assert isinstance(credential._make(), ClientAssertionCredential)


def test_no_adapter_uses_default_credentials_secrets_or_certificates():
    forbidden = {
        "DefaultAzureCredential",
        "ClientSecretCredential",
        "CertificateCredential",
        "from_service_account_file",
        "from_service_account_info",
        "EnvironmentCredential",
    }
    for module in PROVIDERS.glob("*.py"):
        names = {node.id for node in ast.walk(ast.parse(module.read_text())) if isinstance(node, ast.Name)}
        names |= {node.attr for node in ast.walk(ast.parse(module.read_text())) if isinstance(node, ast.Attribute)}
        assert not names & forbidden, module.name
