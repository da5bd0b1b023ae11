"""Domain errors. Each carries its stable code and HTTP status; they are mapped to
responses in one place (``tenant_kms.api`` for HTTP, ``tenant_kms.invoke`` for direct invoke).
Messages never carry key material."""

from __future__ import annotations


class TenantKmsError(Exception):
    code = "internal_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = {}  # extra HTTP response headers

    def as_body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidRequest(TenantKmsError):
    code, status = "invalid_request", 400


class StaticCredentialsRejected(TenantKmsError):
    code, status = "static_credentials_rejected", 400


class Unauthorized(TenantKmsError):
    code, status = "unauthorized", 401


class StepUpRequired(TenantKmsError):
    """The route needs a more recent login than the token shows (RFC 9470)."""

    code, status = "step_up_required", 401

    def __init__(self, message: str, max_age: int) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": f'Bearer error="insufficient_user_authentication", max_age={max_age}'}


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


class Sealed(TenantKmsError):
    code, status = "sealed", 423


class ProviderUnavailable(TenantKmsError):
    """The wrapping provider did not answer in time (retries or the request's budget spent)."""

    code, status = "provider_unavailable", 503
    retry_after_seconds = 5

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(self.retry_after_seconds)}


class Unavailable(TenantKmsError):
    """Our own storage (DynamoDB) stayed throttled or unreachable through the bounded retries.

    Nothing was changed by the failed call; the caller may repeat it after ``Retry-After``.
    The wrapping provider's faults stay ``provider_unavailable``."""

    code, status = "unavailable", 503

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.headers = {"Retry-After": str(retry_after_seconds)}

    def as_body(self) -> dict:
        body = super().as_body()
        body["error"]["retry_after_seconds"] = self.retry_after_seconds  # direct invoke has no headers
        return body
