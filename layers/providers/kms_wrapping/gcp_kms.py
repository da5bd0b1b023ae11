"""GCP Cloud KMS adapters: ``operator_kms_gcp`` and ``customer_kms_gcp``.

Encrypt/Decrypt bind tenant and version as ``additional_authenticated_data`` and carry
CRC32C checksums both ways, as Google documents for end-to-end integrity: a mismatch is
retried a bounded number of times and then fails; a key that did not verify is never
returned. The key version that encrypted (the response ``name``) is what a TMK version
records.

Credentials come from Workload Identity Federation with an AWS identity (the AWS-type
``external_account`` credential: its subject token is a signed ``sts:GetCallerIdentity``
request, so no key file exists), optionally impersonating a service account. For a tenant
that identity is the tenant's own session, so the customer's attribute condition can admit
this tenant and no other.

The token exchange runs here, before the call, not inside gRPC's metadata plugin: there a
refused exchange becomes UNAVAILABLE "Getting metadata from plugin failed" and the
customer's revocation would look like an outage forever.

Retries are ours (the SDK's own are off), so one request deadline bounds them all: every
attempt's gRPC deadline and token request timeout is at most what is left of it, and no
backoff starts that would outlast it (``kms_wrapping.deadline``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import google_crc32c
from google.api_core import exceptions as gexc

from kms_wrapping import deadline
from kms_wrapping.base import (
    KeyAccessRefused,
    KeyWrapper,
    ProviderConfigInvalid,
    ProviderUnavailable,
    WrapContext,
    WrappedKey,
    WrapperError,
)

KEY_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
GOOGLE_STS_TOKEN_URL = "https://sts.googleapis.com/v1/token"  # noqa: S105 - an endpoint, not a secret
IMPERSONATION_URL = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateAccessToken"
CLOUD_KMS_ENDPOINT = "cloudkms.googleapis.com"
AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"  # noqa: S105 - a type name
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

# Refusals seal. INVALID_ARGUMENT is one too (the ciphertext or AAD is not for this key),
# except when Cloud KMS says a request checksum did not verify: damage in transit.
REFUSALS = (gexc.PermissionDenied, gexc.FailedPrecondition, gexc.NotFound, gexc.InvalidArgument)
TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.TooManyRequests,
    gexc.ResourceExhausted,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.GatewayTimeout,
    gexc.Aborted,
    gexc.Unknown,
)
# Google STS answers that mean the customer's pool, provider or condition turned us away.
# invalid_grant also covers AWS refusing our own signed request: that one is ours.
STS_REFUSALS = frozenset({"invalid_grant", "unauthorized_client", "invalid_target", "access_denied"})


class IntegrityMismatch(Exception):
    """A checksum did not verify: the request or the answer was damaged in transit."""


def crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


def backoff(attempt: int) -> float:
    return min(2.0, 0.05 * 2 ** (attempt - 1))


# How the adapters built without a ``sleep`` of their own wait between attempts; read when a
# wait is due, so a test of the deployed registry can put its clock here.
wait: Callable[[float], None] = time.sleep


def _pause(seconds: float, fault: str, sleep: Callable[[float], None] | None) -> None:
    """Back off before the next attempt, unless the request's budget would be spent by then."""
    if not deadline.left_after(seconds):
        raise deadline.DeadlineExceeded(f"{fault}; no time left in the request's budget for another attempt")
    (sleep or wait)(seconds)


def _is_checksum_complaint(exc: gexc.GoogleAPICallError) -> bool:
    message = (exc.message or "").lower()
    return "crc32c" in message or "checksum" in message


class _TokenRequest:
    """google-auth's HTTP transport with our timeout, remembering the status of the last answer."""

    def __init__(self, timeout: float) -> None:
        from google.auth.transport.requests import Request

        self._request = Request()
        self._timeout = timeout
        self.last: tuple[str, int] | None = None

    def __call__(self, url: str, method: str = "GET", body=None, headers=None, timeout=None, **kwargs) -> Any:
        self.last = None
        response = self._request(url, method=method, body=body, headers=headers, timeout=self._timeout, **kwargs)
        self.last = (url, response.status)
        return response


def _token_refusal(last: tuple[str, int] | None, exc: Exception) -> str | None:
    """Why the customer refused the exchange, or None when it is a fault (ours or transient)."""
    if last is None:
        return None
    url, status = last
    if status == 429 or status >= 500:
        return None
    body = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else ""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if url.startswith(GOOGLE_STS_TOKEN_URL):
        error, description = str(answer.get("error", "")), str(answer.get("error_description", ""))
        if status in (400, 401, 403, 404) and error in STS_REFUSALS and "AWS response" not in description:
            return f"token exchange refused: {error}: {description}"[:300]
        return None
    if url.endswith(":generateAccessToken") and status in (403, 404):
        detail = answer.get("error", {}) if isinstance(answer.get("error"), dict) else {}
        return f"impersonation refused: {status} {detail.get('status', '')}: {detail.get('message', '')}"[:300]
    return None


class FederatedToken:
    """A Google access token for one AWS identity, exchanged in our code with bounded retries."""

    def __init__(
        self,
        credentials: Any,
        *,
        max_attempts: int = 4,
        timeout_seconds: float = 5.0,
        max_age_seconds: float | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.credentials = credentials
        self._max_attempts = max(1, max_attempts)
        self._timeout = timeout_seconds
        self._max_age = max_age_seconds
        self._sleep = sleep
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """A usable token, or KeyAccessRefused (the customer said no) / ProviderUnavailable."""
        with self._lock:
            if self.credentials.valid:
                return
            fault = "no answer"
            for attempt in range(1, self._max_attempts + 1):
                request = _TokenRequest(deadline.grant(self._timeout, "Google token exchange"))
                try:
                    self.credentials.refresh(request)
                    self._cap_lifetime()
                    return
                except WrapperError:
                    raise
                except Exception as exc:
                    refusal = _token_refusal(request.last, exc)
                    if refusal:
                        raise KeyAccessRefused(refusal) from None
                    status = f"HTTP {request.last[1]}" if request.last else type(exc).__name__
                    fault = f"{type(exc).__name__} ({status}): {str(exc)[:200]}"
                if attempt < self._max_attempts:
                    _pause(backoff(attempt), f"Google token exchange: {fault}", self._sleep)
            raise ProviderUnavailable(f"Google token exchange failed after {self._max_attempts} attempts: {fault}")

    def invalidate(self) -> None:
        with self._lock:
            self.credentials.token = None

    def _cap_lifetime(self) -> None:
        # A revoked pool or condition only shows at the next exchange: exchange at least once per TTL.
        if self._max_age is None or self.credentials.expiry is None:
            return
        import datetime

        from google.auth import _helpers

        latest = _helpers.utcnow() + datetime.timedelta(seconds=self._max_age)
        self.credentials.expiry = min(self.credentials.expiry, latest)


class GcpKmsWrapper(KeyWrapper):
    def __init__(
        self,
        *,
        provider: str,
        key_name: str,
        kms_client: Any,
        token: FederatedToken | None = None,
        max_attempts: int = 4,
        timeout_seconds: float = 5.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not KEY_NAME.match(key_name):
            raise ProviderConfigInvalid("key_name must be projects/…/locations/…/keyRings/…/cryptoKeys/…")
        self.provider = provider
        self._key_name = key_name
        self._kms = kms_client
        self._token = token
        self._max_attempts = max(1, max_attempts)
        self._timeout = timeout_seconds
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"GcpKmsWrapper(provider={self.provider!r}, key_name={self._key_name!r})"

    def _call(self, action: str, attempt: Callable[[], Any]) -> Any:
        """One logical call: every attempt (transient fault or damaged checksum) counts against the maximum."""
        fault = ""
        for number in range(1, self._max_attempts + 1):
            try:
                if self._token is not None:
                    self._token.ensure()
                # The gRPC deadline of this attempt: never past the request's own.
                return attempt(deadline.grant(self._timeout, action))
            except IntegrityMismatch:
                fault = "checksums did not verify"
            except gexc.InvalidArgument as exc:
                if not _is_checksum_complaint(exc):
                    raise KeyAccessRefused(f"{action} refused: InvalidArgument: {exc.message}") from None
                fault = "checksums did not verify"
            except REFUSALS as exc:
                raise KeyAccessRefused(f"{action} refused: {type(exc).__name__}: {exc.message}") from None
            except gexc.Unauthenticated:
                # Our token was not accepted: exchange afresh; a revoked federation refuses there.
                if self._token is not None:
                    self._token.invalidate()
                fault = "Unauthenticated"
            except TRANSIENT as exc:
                fault = type(exc).__name__
            except gexc.GoogleAPICallError as exc:
                raise ProviderUnavailable(f"{action} failed: {type(exc).__name__}") from None
            if number < self._max_attempts:
                _pause(backoff(number), f"{action}: {fault}", self._sleep)
        raise ProviderUnavailable(f"{action} failed after {self._max_attempts} attempts: {fault}")

    def _wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey:
        aad = context.aad()

        def attempt(timeout: float) -> WrappedKey:
            answer = self._kms.encrypt(
                request={
                    "name": self._key_name,
                    "plaintext": plaintext,
                    "plaintext_crc32c": crc32c(plaintext),
                    "additional_authenticated_data": aad,
                    "additional_authenticated_data_crc32c": crc32c(aad),
                },
                retry=None,
                timeout=timeout,
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

        def attempt(timeout: float) -> bytes:
            answer = self._kms.decrypt(
                request={
                    "name": self._key_name,
                    "ciphertext": wrapped.ciphertext,
                    "ciphertext_crc32c": crc32c(wrapped.ciphertext),
                    "additional_authenticated_data": aad,
                    "additional_authenticated_data_crc32c": crc32c(aad),
                },
                retry=None,
                timeout=timeout,
            )
            if answer.plaintext_crc32c != crc32c(answer.plaintext):
                raise IntegrityMismatch()
            return answer.plaintext

        return self._call("Decrypt", attempt)


def _own_aws_credentials() -> Callable[[], Any]:
    """The function's own AWS credentials (local runs, or no per-tenant session configured)."""
    import boto3

    session = boto3.session.Session()

    def current() -> Any:
        credentials = session.get_credentials()
        if credentials is None:
            raise ProviderUnavailable("no AWS credentials available to this function")
        return credentials.get_frozen_credentials()

    return current


def federated_credentials(
    *,
    workload_identity_provider: str,
    service_account_email: str | None,
    aws_region: str,
    aws_credentials: Callable[[], Any] | None = None,
) -> Any:
    """An AWS-type external_account credential for the given workload identity provider.

    ``aws_credentials`` returns the AWS credentials (``access_key``, ``secret_key``,
    ``token``) whose signed GetCallerIdentity Google STS checks; default: the function's own.
    """
    from google.auth import aws

    source = aws_credentials or _own_aws_credentials()

    class Supplier(aws.AwsSecurityCredentialsSupplier):
        def get_aws_security_credentials(self, context: Any, request: Any) -> Any:
            try:
                current = source()
            except WrapperError:
                raise
            except Exception as exc:
                raise ProviderUnavailable(f"AWS credentials for the token exchange: {type(exc).__name__}") from None
            return aws.AwsSecurityCredentials(current.access_key, current.secret_key, current.token)

        def get_aws_region(self, context: Any, request: Any) -> str:
            return aws_region

    return aws.Credentials(
        audience=workload_identity_provider,
        subject_token_type=AWS_SUBJECT_TOKEN_TYPE,
        token_url=GOOGLE_STS_TOKEN_URL,
        aws_security_credentials_supplier=Supplier(),
        service_account_impersonation_url=(
            IMPERSONATION_URL.format(service_account_email) if service_account_email else None
        ),
        scopes=[CLOUD_PLATFORM_SCOPE],
    )


def _exchanged_credentials(make: Callable[[], Any]) -> Any:
    """Call credentials whose every refresh is a whole new exchange.

    google-auth keeps the STS token behind an impersonated one for its full hour; a fresh
    credential per refresh means a deleted pool or narrowed condition is seen at the next one.
    """
    from google.auth import credentials

    class Exchanged(credentials.Credentials):
        def refresh(self, request: Any) -> None:
            inner = make()
            inner.refresh(request)
            self.token, self.expiry = inner.token, inner.expiry

    return Exchanged()


def kms_client(credentials: Any) -> Any:
    """The Cloud KMS client: Google's endpoint over TLS, the federated credentials as call credentials.

    A local stand-in is reached through gRPC's own standard settings (``grpc_proxy``,
    ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``), never through a setting of ours.
    """
    from google.cloud import kms_v1
    from google.cloud.kms_v1.services.key_management_service.transports import KeyManagementServiceGrpcTransport

    transport = KeyManagementServiceGrpcTransport(host=CLOUD_KMS_ENDPOINT, credentials=credentials)
    return kms_v1.KeyManagementServiceClient(transport=transport)


def _wrapper(
    *,
    provider: str,
    key_name: str,
    workload_identity_provider: str,
    service_account_email: str | None,
    aws_region: str,
    aws_credentials: Callable[[], Any] | None,
    max_attempts: int,
    timeout_seconds: float,
    token_max_age: float | None,
) -> KeyWrapper:
    if not KEY_NAME.match(key_name):
        raise ProviderConfigInvalid("key_name must be projects/…/locations/…/keyRings/…/cryptoKeys/…")
    credentials = _exchanged_credentials(
        lambda: federated_credentials(
            workload_identity_provider=workload_identity_provider,
            service_account_email=service_account_email,
            aws_region=aws_region,
            aws_credentials=aws_credentials,
        )
    )
    token = FederatedToken(
        credentials, max_attempts=max_attempts, timeout_seconds=timeout_seconds, max_age_seconds=token_max_age
    )
    return GcpKmsWrapper(
        provider=provider,
        key_name=key_name,
        kms_client=kms_client(credentials),
        token=token,
        max_attempts=max_attempts,
        timeout_seconds=timeout_seconds,
    )


def customer_wrapper(
    tenant_config: dict[str, Any],
    _tenant_id: str,
    *,
    aws_region: str,
    aws_credentials: Callable[[], Any] | None = None,
    max_attempts: int = 4,
    timeout_seconds: float = 5.0,
    token_max_age: float | None = None,
) -> KeyWrapper:
    """``aws_credentials``: the tenant's own AWS identity, which the customer's condition names."""
    return _wrapper(
        provider="customer_kms_gcp",
        key_name=tenant_config["key_name"],
        workload_identity_provider=tenant_config["workload_identity_provider"],
        service_account_email=tenant_config.get("service_account_email"),
        aws_region=aws_region,
        aws_credentials=aws_credentials,
        max_attempts=max_attempts,
        timeout_seconds=timeout_seconds,
        token_max_age=token_max_age,
    )


def operator_wrapper(
    *,
    key_name: str,
    workload_identity_provider: str,
    service_account_email: str | None,
    aws_region: str,
    aws_credentials: Callable[[], Any] | None = None,
    max_attempts: int = 4,
    timeout_seconds: float = 5.0,
) -> KeyWrapper:
    return _wrapper(
        provider="operator_kms_gcp",
        key_name=key_name,
        workload_identity_provider=workload_identity_provider,
        service_account_email=service_account_email,
        aws_region=aws_region,
        aws_credentials=aws_credentials,
        max_attempts=max_attempts,
        timeout_seconds=timeout_seconds,
        token_max_age=None,
    )
