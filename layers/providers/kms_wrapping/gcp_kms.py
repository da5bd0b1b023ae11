"""GCP Cloud KMS adapters: ``operator_kms_gcp`` and ``customer_kms_gcp``.

Encrypt/Decrypt bind tenant and version as ``additional_authenticated_data`` and carry
CRC32C checksums both ways, as Google documents for end-to-end integrity: a mismatch is
retried a bounded number of times and then fails; a key that did not verify is never
returned. The key version that encrypted (the response ``name``) is what a TMK version
records.

Credentials come from Workload Identity Federation with the function's AWS identity (the
AWS-type ``external_account`` credential: its subject token is a signed
``sts:GetCallerIdentity`` request made from the function's own credentials, so no key file
and no extra AWS call exist), optionally impersonating a service account.
"""

from __future__ import annotations

import re
from typing import Any

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry

from kms_wrapping.base import (
    KeyAccessRefused,
    KeyWrapper,
    ProviderConfigInvalid,
    ProviderUnavailable,
    WrapContext,
    WrappedKey,
)

KEY_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
GOOGLE_STS_TOKEN_URL = "https://sts.googleapis.com/v1/token"  # noqa: S105 - an endpoint, not a secret
IMPERSONATION_URL = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateAccessToken"
AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"  # noqa: S105 - a type name
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

# Refusals seal; the transient ones are retried, then answer provider_unavailable.
REFUSALS = (
    gexc.PermissionDenied,
    gexc.FailedPrecondition,
    gexc.NotFound,
    gexc.Unauthenticated,
    gexc.InvalidArgument,
)
TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.TooManyRequests,
    gexc.ResourceExhausted,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.GatewayTimeout,
)


class IntegrityMismatch(Exception):
    """A checksum did not verify: the request or the answer was damaged in transit."""


def crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


def default_retry(deadline_seconds: float) -> gretry.Retry:
    return gretry.Retry(
        predicate=gretry.if_exception_type(*TRANSIENT),
        initial=0.1,
        maximum=2.0,
        multiplier=2.0,
        timeout=deadline_seconds,
    )


class GcpKmsWrapper(KeyWrapper):
    def __init__(
        self,
        *,
        provider: str,
        key_name: str,
        kms_client: Any,
        integrity_attempts: int = 3,
        retry: gretry.Retry | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        if not KEY_NAME.match(key_name):
            raise ProviderConfigInvalid("key_name must be projects/…/locations/…/keyRings/…/cryptoKeys/…")
        self.provider = provider
        self._key_name = key_name
        self._kms = kms_client
        self._integrity_attempts = integrity_attempts
        self._retry = retry or default_retry(deadline_seconds=timeout_seconds)
        self._timeout = timeout_seconds

    def __repr__(self) -> str:
        return f"GcpKmsWrapper(provider={self.provider!r}, key_name={self._key_name!r})"

    def _call(self, action: str, attempt) -> Any:
        """One logical call: SDK retries for transient errors, our retries for integrity."""
        for _ in range(self._integrity_attempts):
            try:
                return attempt()
            except IntegrityMismatch:
                continue
            except REFUSALS as exc:
                raise KeyAccessRefused(f"{action} refused: {type(exc).__name__}: {exc.message}") from None
            except (gexc.RetryError, *TRANSIENT) as exc:
                raise ProviderUnavailable(f"{action} failed after retries: {type(exc).__name__}") from None
            except gexc.GoogleAPICallError as exc:
                raise ProviderUnavailable(f"{action} failed: {type(exc).__name__}") from None
        raise ProviderUnavailable(f"{action}: checksums did not verify in {self._integrity_attempts} attempts")

    def _wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey:
        aad = context.aad()

        def attempt() -> WrappedKey:
            answer = self._kms.encrypt(
                request={
                    "name": self._key_name,
                    "plaintext": plaintext,
                    "plaintext_crc32c": crc32c(plaintext),
                    "additional_authenticated_data": aad,
                    "additional_authenticated_data_crc32c": crc32c(aad),
                },
                retry=self._retry,
                timeout=self._timeout,
            )
            if not answer.verified_plaintext_crc32c or not answer.verified_additional_authenticated_data_crc32c:
                raise IntegrityMismatch()
            if answer.ciphertext_crc32c != crc32c(answer.ciphertext):
                raise IntegrityMismatch()
            if not answer.name.startswith(self._key_name + "/cryptoKeyVersions/"):
                raise KeyAccessRefused(f"Cloud KMS encrypted with {answer.name}, not a version of {self._key_name}")
            return WrappedKey(key_id=answer.name, ciphertext=answer.ciphertext)

        return self._call("Encrypt", attempt)

    def _unwrap(self, wrapped: WrappedKey, context: WrapContext) -> bytes:
        if not wrapped.key_id.startswith(self._key_name + "/cryptoKeyVersions/"):
            raise KeyAccessRefused(f"wrapped under {wrapped.key_id}, not a version of {self._key_name}")
        aad = context.aad()

        def attempt() -> bytes:
            answer = self._kms.decrypt(
                request={
                    "name": self._key_name,
                    "ciphertext": wrapped.ciphertext,
                    "ciphertext_crc32c": crc32c(wrapped.ciphertext),
                    "additional_authenticated_data": aad,
                    "additional_authenticated_data_crc32c": crc32c(aad),
                },
                retry=self._retry,
                timeout=self._timeout,
            )
            if answer.plaintext_crc32c != crc32c(answer.plaintext):
                raise IntegrityMismatch()
            return answer.plaintext

        return self._call("Decrypt", attempt)


def federated_credentials(
    *,
    workload_identity_provider: str,
    service_account_email: str | None,
    aws_region: str,
    token_url: str = GOOGLE_STS_TOKEN_URL,
) -> Any:
    """An AWS-type external_account credential for the given workload identity provider."""
    from google.auth import aws

    info = {
        "type": "external_account",
        "audience": workload_identity_provider,
        "subject_token_type": AWS_SUBJECT_TOKEN_TYPE,
        "token_url": token_url,
        "credential_source": {
            "environment_id": "aws1",
            "regional_cred_verification_url": (
                f"https://sts.{aws_region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
            ),
        },
        "scopes": [CLOUD_PLATFORM_SCOPE],
    }
    if service_account_email:
        info["service_account_impersonation_url"] = IMPERSONATION_URL.format(service_account_email)
    return aws.Credentials.from_info(info)


def kms_client(credentials: Any) -> Any:
    from google.cloud import kms_v1

    return kms_v1.KeyManagementServiceClient(credentials=credentials)


def customer_wrapper(tenant_config: dict[str, Any], _tenant_id: str, *, aws_region: str) -> KeyWrapper:
    credentials = federated_credentials(
        workload_identity_provider=tenant_config["workload_identity_provider"],
        service_account_email=tenant_config.get("service_account_email"),
        aws_region=aws_region,
    )
    return GcpKmsWrapper(
        provider="customer_kms_gcp", key_name=tenant_config["key_name"], kms_client=kms_client(credentials)
    )


def operator_wrapper(
    *, key_name: str, workload_identity_provider: str, service_account_email: str | None, aws_region: str
) -> KeyWrapper:
    credentials = federated_credentials(
        workload_identity_provider=workload_identity_provider,
        service_account_email=service_account_email,
        aws_region=aws_region,
    )
    return GcpKmsWrapper(provider="operator_kms_gcp", key_name=key_name, kms_client=kms_client(credentials))
