"""This deployment as an OpenID Connect issuer towards Entra ID.

An Entra federated credential matches issuer, subject and audience exactly, so the subject
must name the tenant: each tenant's client assertion is an RS256 JWT with
``sub = "tenant:<tenant_id>"``, signed by ``kms:Sign`` with an asymmetric KMS key (the
private key never leaves KMS). The public key is served as a JWKS next to an OIDC discovery
document, which is where Entra ID looks for it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from kms_wrapping.base import ProviderConfigInvalid, ProviderUnavailable

AUDIENCE = "api://AzureADTokenExchange"
# Entra ID takes the assertion at once; a short life bounds what a leaked one is worth.
ASSERTION_SECONDS = 300
SIGNING_ALGORITHM = "RSASSA_PKCS1_V1_5_SHA_256"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def subject_of(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


def jwk_from_der(public_key_der: bytes) -> dict[str, str]:
    """The RSA public key (SubjectPublicKeyInfo DER, as KMS returns it) as a JWK with its
    RFC 7638 thumbprint as ``kid``."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    key = load_der_public_key(public_key_der)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProviderConfigInvalid("the federation signing key is not an RSA key")
    numbers = key.public_numbers()
    members = {"e": _uint(numbers.e), "kty": "RSA", "n": _uint(numbers.n)}
    thumbprint = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return {**members, "kid": _b64url(thumbprint), "use": "sig", "alg": "RS256"}


class AssertionSigner:
    """Signs per-tenant client assertions with a KMS key and publishes its public key.

    ``kms_for(tenant_id)``: the KMS client to sign with for that tenant (its session of the
    key-wrapping role, so CloudTrail names the tenant); ``None`` asks for the one that reads
    the public key.
    """

    def __init__(
        self,
        *,
        key_id: str,
        issuer: str,
        kms_for: Callable[[str | None], Any],
        clock: Callable[[], float] = time.time,
        lifetime_seconds: int = ASSERTION_SECONDS,
    ) -> None:
        if not key_id or not issuer:
            raise ProviderConfigInvalid("federation needs FEDERATION_SIGNING_KEY_ID and FEDERATION_ISSUER_URL")
        if not 0 < lifetime_seconds <= ASSERTION_SECONDS:
            raise ProviderConfigInvalid(f"assertions live at most {ASSERTION_SECONDS} s")
        self.key_id = key_id
        self.issuer = issuer.rstrip("/")
        self._kms_for = kms_for
        self._clock = clock
        self._lifetime = lifetime_seconds
        self._jwk: dict[str, str] | None = None
        self._lock = threading.Lock()

    def discovery(self) -> dict[str, Any]:
        """The OIDC discovery document Entra ID reads at <issuer>/.well-known/openid-configuration."""
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/.well-known/jwks.json",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"],
        }

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, read from KMS once per instance (it never changes)."""
        with self._lock:
            if self._jwk is None:
                try:
                    answer = self._kms_for(None).get_public_key(KeyId=self.key_id)
                except Exception as exc:
                    raise ProviderUnavailable(f"GetPublicKey on the federation key failed: {_code(exc)}") from None
                self._jwk = jwk_from_der(answer["PublicKey"])
            return self._jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def assertion(self, tenant_id: str) -> str:
        now = int(self._clock())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.public_jwk()["kid"]}
        claims = {
            "iss": self.issuer,
            "sub": subject_of(tenant_id),
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + self._lifetime,
            "jti": str(uuid.uuid4()),
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        ).encode()
        try:
            answer = self._kms_for(tenant_id).sign(
                KeyId=self.key_id, Message=signing_input, MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM
            )
        except ProviderUnavailable:
            raise
        except Exception as exc:
            # Our key and our role: whatever went wrong is ours to fix, never the customer's refusal.
            raise ProviderUnavailable(f"kms:Sign with the federation key failed: {_code(exc)}") from None
        return signing_input.decode() + "." + _b64url(answer["Signature"])

    def token_source(self, tenant_id: str) -> Callable[[], str]:
        """What azure_kv's credential calls for each new Entra token of this tenant."""
        return lambda: self.assertion(tenant_id)


def _code(error: Exception) -> str:
    return getattr(error, "response", {}).get("Error", {}).get("Code") or type(error).__name__
