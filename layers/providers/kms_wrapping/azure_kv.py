"""Azure Key Vault adapters: ``operator_kms_azure`` and ``customer_kms_azure``.

Wrap/unwrap with RSA-OAEP-256 (vault RSA keys) or A256KW (Managed HSM AES keys). Neither
takes AAD, so the binding is made locally: what Key Vault wraps is ``SHA-256(binding) ||
TMK``, and an unwrap whose digest is not this tenant's and version's is refused. The key
version that wrapped (the answer's ``kid``) is what a TMK version records.

Credentials: ``ClientAssertionCredential`` whose assertion is an OIDC token from STS
``GetWebIdentityToken`` (audience ``api://AzureADTokenExchange``) for the function's own
AWS identity — an Entra ID federated credential. Never a client secret or certificate,
never ``DefaultAzureCredential`` (it probes endpoints that do not exist in Lambda).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections.abc import Callable
from typing import Any

from azure.core import exceptions as aexc
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from kms_wrapping.base import (
    TMK_BYTES,
    KeyAccessRefused,
    KeyWrapper,
    ProviderConfigInvalid,
    ProviderUnavailable,
    WrapContext,
    WrappedKey,
)

ENTRA_AUDIENCE = "api://AzureADTokenExchange"
KEY_ID = re.compile(r"^https://[^/]+/keys/[^/]+(/[0-9a-fA-F]{32})?$")
_ALGORITHMS = {b"\x01": KeyWrapAlgorithm.rsa_oaep_256, b"\x02": KeyWrapAlgorithm.aes_256}


def binding_digest(context: WrapContext) -> bytes:
    return hashlib.sha256(b"tenant-kms/azure-binding/v1" + context.aad()).digest()


def algorithm_for(key_id: str) -> bytes:
    # Managed HSM keys here are AES (oct-HSM): A256KW. Vault keys are RSA: RSA-OAEP-256.
    return b"\x02" if ".managedhsm." in key_id else b"\x01"


ALGORITHM_NAMES = {"RSA-OAEP-256": b"\x01", "A256KW": b"\x02"}


class AzureKeyVaultWrapper(KeyWrapper):
    def __init__(
        self,
        *,
        provider: str,
        key_id: str,
        credential: Any,
        client_options: dict[str, Any],
        algorithm: str | None = None,
    ) -> None:
        if not KEY_ID.match(key_id):
            raise ProviderConfigInvalid("key_id must be https://<vault>/keys/<name>[/<version>]")
        self.provider = provider
        self._key_id = key_id
        self._key_name_prefix = key_id.split("/keys/")[0] + "/keys/" + key_id.split("/keys/")[1].split("/")[0] + "/"
        self._kind = ALGORITHM_NAMES[algorithm] if algorithm else algorithm_for(key_id)
        self._credential = credential
        self._options = client_options
        self._clients: dict[str, CryptographyClient] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AzureKeyVaultWrapper(provider={self.provider!r}, key_id={self._key_id!r})"

    def _client(self, key_id: str) -> CryptographyClient:
        with self._lock:
            client = self._clients.get(key_id)
            if client is None:
                client = CryptographyClient(key_id, self._credential, **self._options)
                self._clients[key_id] = client
            return client

    def _call(self, action: str, operation: Callable[[], Any]) -> Any:
        try:
            return operation()
        except aexc.ClientAuthenticationError as exc:
            raise KeyAccessRefused(f"{action} refused: authentication failed ({exc.status_code or 'token'})") from None
        except aexc.HttpResponseError as exc:
            status = exc.status_code or 0
            code = getattr(exc.error, "code", None) or status
            if status == 429 or status >= 500:
                raise ProviderUnavailable(f"{action} failed after retries: HTTP {status}") from None
            raise KeyAccessRefused(f"{action} refused: {code} (HTTP {status})") from None
        except (aexc.ServiceRequestError, aexc.ServiceResponseError) as exc:
            raise ProviderUnavailable(f"{action}: Key Vault did not answer ({type(exc).__name__})") from None

    def _wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey:
        kind = self._kind
        payload = binding_digest(context) + plaintext
        answered: dict[str, str] = {}

        def record_kid(pipeline_response: Any) -> None:
            # The SDK's WrapResult repeats the configured id; the service's answer names the version.
            answered["kid"] = json.loads(pipeline_response.http_response.text()).get("kid", "")

        result = self._call(
            "WrapKey",
            lambda: self._client(self._key_id).wrap_key(_ALGORITHMS[kind], payload, raw_response_hook=record_kid),
        )
        kid = answered.get("kid", "")
        if not kid.startswith(self._key_name_prefix) or not KEY_ID.match(kid) or kid.count("/") != 5:
            raise KeyAccessRefused(f"Key Vault wrapped with {kid or 'an unnamed key'}, not a version of {self._key_id}")
        return WrappedKey(key_id=kid, ciphertext=kind + result.encrypted_key)

    def _unwrap(self, wrapped: WrappedKey, context: WrapContext) -> bytes:
        if not wrapped.key_id.startswith(self._key_name_prefix):
            raise KeyAccessRefused(f"wrapped under {wrapped.key_id}, not a version of {self._key_id}")
        kind, encrypted = wrapped.ciphertext[:1], wrapped.ciphertext[1:]
        if kind not in _ALGORITHMS:
            raise KeyAccessRefused("wrapped key is not in a known Key Vault format")
        result = self._call("UnwrapKey", lambda: self._client(wrapped.key_id).unwrap_key(_ALGORITHMS[kind], encrypted))
        payload = result.key
        digest, tmk = payload[:32], payload[32:]
        if len(tmk) != TMK_BYTES or not secrets.compare_digest(digest, binding_digest(context)):
            raise KeyAccessRefused("wrapped key is bound to another tenant or version")
        return tmk


def web_identity_token_source(sts_client: Any, *, audience: str = ENTRA_AUDIENCE) -> Callable[[], str]:
    """The client assertion: an OIDC token for the function's AWS identity, issued by STS."""

    def token() -> str:
        try:
            answer = sts_client.get_web_identity_token(
                Audience=[audience], SigningAlgorithm="RS256", DurationSeconds=300
            )
        except Exception as exc:  # normalised: the credential reports it as an authentication failure
            raise aexc.ClientAuthenticationError(f"STS GetWebIdentityToken failed: {type(exc).__name__}") from None
        return answer["WebIdentityToken"]

    return token


def federated_credential(*, tenant_id: str, client_id: str, token_source: Callable[[], str]) -> Any:
    from azure.identity import ClientAssertionCredential

    return ClientAssertionCredential(tenant_id=tenant_id, client_id=client_id, func=token_source)


def client_options(*, max_attempts: int, connect_timeout: int, read_timeout: int) -> dict[str, Any]:
    return {
        "retry_total": max(0, max_attempts - 1),
        "retry_backoff_factor": 0.2,
        "connection_timeout": connect_timeout,
        "read_timeout": read_timeout,
    }


def customer_wrapper(tenant_config: dict[str, Any], _tenant_id: str, *, sts_client: Any, options: dict) -> KeyWrapper:
    credential = federated_credential(
        tenant_id=tenant_config["tenant_id"],
        client_id=tenant_config["client_id"],
        token_source=web_identity_token_source(sts_client),
    )
    return AzureKeyVaultWrapper(
        provider="customer_kms_azure", key_id=tenant_config["key_id"], credential=credential, client_options=options
    )


def operator_wrapper(*, key_id: str, tenant_id: str, client_id: str, sts_client: Any, options: dict) -> KeyWrapper:
    credential = federated_credential(
        tenant_id=tenant_id, client_id=client_id, token_source=web_identity_token_source(sts_client)
    )
    return AzureKeyVaultWrapper(
        provider="operator_kms_azure", key_id=key_id, credential=credential, client_options=options
    )
