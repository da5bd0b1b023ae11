"""The deployment as an OIDC issuer towards Entra ID: client assertions signed by kms:Sign
(moto, IAM enforced, as the tenant's session of the key-wrapping role) verify against the
JWKS the public route serves, and name exactly one tenant."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from conftest import ACCOUNT
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from moto.core.authorization import disable_iam_authentication
from moto.sts.models import sts_backends
from support import Function, assert_documented, sample

from kms_wrapping.federation import AssertionSigner
from tenant_kms.providers import Identities
from tenant_kms.settings import Settings

ISSUER = "https://tenant-kms.example.com"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def signing_key(aws, monkeypatch) -> str:
    with disable_iam_authentication():
        key_arn = boto3.client("kms").create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("FEDERATION_SIGNING_KEY_ID", key_arn)
    monkeypatch.setenv("FEDERATION_ISSUER_URL", ISSUER)
    return key_arn


def public(name: str) -> tuple[int, dict, dict]:
    """A public route's answer, which docs/openapi.json documents."""
    event = sample(name)
    return assert_documented(event, Function("federation")(event))


def verify(token: str, jwks: dict) -> dict:
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    assert header["alg"] == "RS256"
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    numbers = rsa.RSAPublicNumbers(
        int.from_bytes(b64url_decode(jwk["e"]), "big"), int.from_bytes(b64url_decode(jwk["n"]), "big")
    )
    numbers.public_key().verify(
        b64url_decode(signature_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return json.loads(b64url_decode(claims_b64))


def test_assertions_verify_against_the_served_jwks_and_name_one_tenant(tenant_id, signing_key):
    # Given the public discovery document and JWKS (no authorizer, cacheable)
    status, headers, discovery = public("federation_openid_configuration")
    assert status == 200 and discovery["issuer"] == ISSUER
    assert discovery["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    status, headers, jwks = public("federation_jwks")
    assert status == 200 and "max-age" in headers["Cache-Control"]
    assert [set(k) for k in jwks["keys"]] == [{"kty", "n", "e", "kid", "use", "alg"}]

    # When a tenant's assertion is signed by KMS
    identities = Identities(Settings.from_env())
    token = identities.azure_assertion(tenant_id)()

    # Then it verifies against the served key and names that tenant for Entra ID, briefly
    claims = verify(token, jwks)
    assert claims["iss"] == ISSUER and claims["sub"] == f"tenant:{tenant_id}"
    assert claims["aud"] == "api://AzureADTokenExchange"
    assert 0 < claims["exp"] - claims["iat"] <= 300 and claims["jti"]
    assert verify(identities.azure_assertion(tenant_id)(), jwks)["jti"] != claims["jti"]
    # signed as that tenant's session of the key-wrapping role
    sessions = {r.session_name for r in sts_backends[ACCOUNT]["aws"].assumed_roles}
    assert tenant_id in sessions and "@service" in sessions

    # And a tampered assertion (another tenant's subject) does not verify
    header_b64, _, signature_b64 = token.split(".")
    forged = json.dumps({**claims, "sub": "tenant:someone-else"}).encode()
    forged_b64 = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):
        verify(f"{header_b64}.{forged_b64}.{signature_b64}", jwks)


def test_signing_failures_are_ours_never_the_customers(tenant_id, signing_key):
    from kms_wrapping import ProviderUnavailable

    def broken_kms(_tenant):
        return boto3.client("kms", endpoint_url="http://127.0.0.1:9", region_name="us-east-1")

    signer = AssertionSigner(key_id=signing_key, issuer=ISSUER, kms_for=broken_kms)
    with pytest.raises(ProviderUnavailable):
        signer.assertion(tenant_id)


def test_without_an_issuer_the_documents_are_not_found(monkeypatch, aws):
    monkeypatch.setenv("FEDERATION_ISSUER_URL", "")
    status, _, body = public("federation_jwks")
    assert (status, body["error"]["code"]) == (404, "not_found")
