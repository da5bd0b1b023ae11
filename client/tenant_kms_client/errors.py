"""Typed errors for the service's answers: one class per error code, the code's HTTP status
kept. Admin routes and direct invokes raise the same classes."""

from __future__ import annotations

import re
from typing import Any


class TenantKmsError(Exception):
    """An answer ``{"error": {"code", "message"}}``, or a refusal of the gateway in front."""

    code = "internal_error"
    status = 500
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.retry_after = retry_after  # seconds the service asked for, if it did
        self.body = body

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"


class InvalidRequest(TenantKmsError):
    code, status = "invalid_request", 400


class StaticCredentialsRejected(InvalidRequest):
    code = "static_credentials_rejected"


class Unauthorized(TenantKmsError):
    code, status = "unauthorized", 401


class StepUpRequired(Unauthorized):
    """The route needs a more recent login: log in again (at most ``max_age`` seconds ago)."""

    code = "step_up_required"
    max_age: int | None = None


class Forbidden(TenantKmsError):
    code, status = "forbidden", 403


class NotFound(TenantKmsError):
    code, status = "not_found", 404


class MethodNotAllowed(TenantKmsError):
    code, status = "method_not_allowed", 405


class Conflict(TenantKmsError):
    code, status = "conflict", 409


class PayloadTooLarge(TenantKmsError):
    code, status = "payload_too_large", 413


class UnsupportedMediaType(TenantKmsError):
    code, status = "unsupported_media_type", 415


class VerificationFailed(TenantKmsError):
    code, status = "verification_failed", 422


class IdempotencyKeyReused(TenantKmsError):
    code, status = "idempotency_key_reused", 422


class Sealed(TenantKmsError):
    """The tenant's wrapping key refused an unwrap. Not retried: it stays sealed until the
    grant returns (then ``unseal``, a configure, or the scheduled re-poll lifts it)."""

    code, status = "sealed", 423


class ProviderUnavailable(TenantKmsError):
    """The wrapping provider stayed throttled, failing or silent; nothing was changed."""

    code, status, retryable = "provider_unavailable", 503, True


class Unavailable(TenantKmsError):
    """The service's own tables stayed throttled or unreachable; nothing was changed."""

    code, status, retryable = "unavailable", 503, True


class IntegrityError(TenantKmsError):
    code, status = "integrity_error", 500


class Throttled(TenantKmsError):
    """Lambda refused the invoke for the function's concurrency (TooManyRequestsException)."""

    code, status, retryable = "throttled", 429, True


class GatewayError(TenantKmsError):
    """An answer that is not the service's: API Gateway's own (``{"message"}``), a timeout, or
    a function that failed. 502/503/504 are retried only where a repeat is harmless."""

    code = "gateway_error"


class FunctionFailed(TenantKmsError):
    """A direct invoke whose function raised (Lambda's ``X-Amz-Function-Error``)."""

    code = "function_failed"


BY_CODE: dict[str, type[TenantKmsError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        StaticCredentialsRejected,
        Unauthorized,
        StepUpRequired,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        VerificationFailed,
        IdempotencyKeyReused,
        Sealed,
        ProviderUnavailable,
        Unavailable,
        IntegrityError,
        TenantKmsError,
    )
}
_MAX_AGE = re.compile(r"max_age=(\d+)")


def error_from(body: Any, status: int | None = None, headers: dict[str, str] | None = None) -> TenantKmsError | None:
    """The typed error an answer carries, or None if it carries none."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        if status is None or status < 400:
            return None
        message = body.get("message") if isinstance(body, dict) else None
        if status == 401:
            return Unauthorized(str(message or "Unauthorized"), status=401, body=body)
        return GatewayError(str(message or f"HTTP {status}"), status=status, body=body)
    code = str(detail.get("code") or "internal_error")
    cls = BY_CODE.get(code, TenantKmsError)
    retry_after = detail.get("retry_after_seconds")
    if retry_after is None and headers.get("retry-after", "").isdigit():
        retry_after = int(headers["retry-after"])
    error = cls(
        str(detail.get("message") or code),
        status=status if status is not None else cls.status,
        code=code,
        retry_after=retry_after,
        body=body,
    )
    if isinstance(error, StepUpRequired):
        found = _MAX_AGE.search(headers.get("www-authenticate", ""))
        error.max_age = int(found.group(1)) if found else None
    return error
