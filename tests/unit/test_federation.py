"""How the GCP and Azure adapters get credentials: federation from the function's AWS
identity, never a key file, client secret or certificate."""

from __future__ import annotations

import ast
import json
import urllib.parse
from pathlib import Path

import boto3
import pytest
from botocore.credentials import ReadOnlyCredentials
from botocore.stub import Stubber
from google.auth.exceptions import OAuthError, RefreshError, TransportError

from kms_wrapping import ProviderUnavailable
from kms_wrapping.azure_kv import (
    ENTRA_AUDIENCE,
    TokenUnavailable,
    federated_credential,
    web_identity_token_source,
)
from kms_wrapping.gcp_kms import AWS_SUBJECT_TOKEN_TYPE, _token_refusal, federated_credentials

WIF = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/saas/providers/aws-lambda"
SESSION = ReadOnlyCredentials("ASIAEXAMPLETENANT01", "example-secret", "example-session-token")
PROVIDERS = Path(__file__).resolve().parents[2] / "layers/providers/kms_wrapping"


def test_gcp_uses_an_aws_type_external_account_for_the_tenants_provider():
    credentials = federated_credentials(
        workload_identity_provider=WIF,
        service_account_email="tenant-kms@acme-prod.iam.gserviceaccount.com",
        aws_region="eu-west-1",
        aws_credentials=lambda: SESSION,
    )
    info = credentials.info
    assert info["type"] == "external_account" and info["audience"] == WIF
    assert info["subject_token_type"] == AWS_SUBJECT_TOKEN_TYPE
    assert info["token_url"] == "https://sts.googleapis.com/v1/token"
    assert info["service_account_impersonation_url"] == (
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
        "tenant-kms@acme-prod.iam.gserviceaccount.com:generateAccessToken"
    )
    assert "private_key" not in str(info)


def test_gcp_subject_token_is_signed_by_the_tenants_session():
    credentials = federated_credentials(
        workload_identity_provider=WIF,
        service_account_email=None,
        aws_region="eu-west-1",
        aws_credentials=lambda: SESSION,
    )
    signed = json.loads(urllib.parse.unquote(credentials.retrieve_subject_token(request=None)))
    headers = {h["key"]: h["value"] for h in signed["headers"]}
    assert signed["url"] == "https://sts.eu-west-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    assert f"Credential={SESSION.access_key}/" in headers["Authorization"]
    assert headers["x-amz-security-token"] == SESSION.token
    assert headers["x-goog-cloud-target-resource"] == WIF


def test_gcp_without_impersonation_uses_the_federated_token_directly():
    info = federated_credentials(
        workload_identity_provider=WIF, service_account_email=None, aws_region="us-east-1"
    ).info
    assert "service_account_impersonation_url" not in info


def test_gcp_failing_aws_credentials_are_our_fault_not_a_refusal():
    def broken():
        raise RuntimeError("no session")

    credentials = federated_credentials(
        workload_identity_provider=WIF, service_account_email=None, aws_region="us-east-1", aws_credentials=broken
    )
    with pytest.raises(ProviderUnavailable):
        credentials.retrieve_subject_token(request=None)


STS = "https://sts.googleapis.com/v1/token"
IAM = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"


def _oauth(error: str, description: str = "") -> OAuthError:
    body = json.dumps({"error": error, "error_description": description})
    return OAuthError(f"Error code {error}", body)


def _google(status: int, state: str) -> RefreshError:
    return RefreshError("Unable to acquire impersonated credentials", json.dumps({"error": {"status": state}}))


@pytest.mark.parametrize(
    ("last", "error", "refused"),
    [
        ((STS, 400), _oauth("invalid_target", "the pool or provider is disabled or deleted"), True),
        (
            (STS, 400),
            _oauth("unauthorized_client", "The given credential is rejected by the attribute condition."),
            True,
        ),
        ((STS, 400), _oauth("invalid_grant", "The AWS account of the caller does not match the provider."), True),
        # AWS refused our own signed request (expired session): ours to fix.
        ((STS, 400), _oauth("invalid_grant", "Received invalid AWS response of type ExpiredToken"), False),
        ((STS, 400), _oauth("invalid_request", "Invalid subject_token_type."), False),
        ((STS, 429), _oauth("rate_limited"), False),
        ((STS, 503), OAuthError("<html>Service Unavailable</html>", "<html>Service Unavailable</html>"), False),
        ((IAM, 403), _google(403, "PERMISSION_DENIED"), True),
        ((IAM, 404), _google(404, "NOT_FOUND"), True),
        ((IAM, 401), _google(401, "UNAUTHENTICATED"), False),
        ((IAM, 429), _google(429, "RESOURCE_EXHAUSTED"), False),
        ((IAM, 500), _google(500, "INTERNAL"), False),
        (None, TransportError("timed out"), False),
    ],
)
def test_gcp_token_failures_refuse_only_on_the_customers_answer(last, error, refused):
    assert bool(_token_refusal(last, error)) is refused


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


@pytest.mark.parametrize(
    ("last", "error", "refused"),
    [
        # Each status Google STS answers a refusal with, not only 400.
        ((STS, 401), _oauth("unauthorized_client", "The caller is not allowed by the provider."), True),
        ((STS, 403), _oauth("access_denied", "The pool is disabled."), True),
        ((STS, 404), _oauth("invalid_target", "The provider was not found."), True),
        # Throttled or failing: a fault whatever the body says.
        ((STS, 429), _oauth("invalid_grant", "Quota exceeded."), False),
        ((STS, 500), _oauth("invalid_target", "Internal error."), False),
        # Bodies that say nothing usable are no refusal, and never an error of their own.
        ((STS, 400), OAuthError("Error code invalid_grant"), False),
        ((STS, 400), OAuthError("Error code invalid_grant", json.dumps(["invalid_grant"])), False),
        ((IAM, 403), RefreshError("Unable to acquire impersonated credentials", json.dumps({"error": "denied"})), True),
    ],
)
def test_gcp_token_refusals_by_status_and_body_shape(last, error, refused):
    """Catches a refusal status list missing 401/403/404, the throttled/5xx rule losing to a
    refusal-looking body, and a body without a second argument, a JSON array, or an error that
    is a string raising instead of answering."""
    assert bool(_token_refusal(last, error)) is refused
