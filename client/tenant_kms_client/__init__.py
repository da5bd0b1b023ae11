"""A small Python client for Tenant KMS: the admin HTTP API (standard library only) and the
direct invoke of UnwrapFunction and TenantDataFunction (boto3). Refusals raise the typed
errors of ``tenant_kms_client.errors``; 503s the service marks retryable, and Lambda's
throttling, are retried with bounded backoff."""

from tenant_kms_client.admin import AdminClient, bearer, local_claims
from tenant_kms_client.errors import (
    Conflict,
    Forbidden,
    FunctionFailed,
    GatewayError,
    IdempotencyKeyReused,
    IntegrityError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProviderUnavailable,
    Sealed,
    StaticCredentialsRejected,
    StepUpRequired,
    TenantKmsError,
    Throttled,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    VerificationFailed,
)
from tenant_kms_client.invoke import InvokeClient, Record, TenantKey
from tenant_kms_client.retry import NO_RETRY, Retry

__all__ = [
    "NO_RETRY",
    "AdminClient",
    "Conflict",
    "Forbidden",
    "FunctionFailed",
    "GatewayError",
    "IdempotencyKeyReused",
    "IntegrityError",
    "InvalidRequest",
    "InvokeClient",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "ProviderUnavailable",
    "Record",
    "Retry",
    "Sealed",
    "StaticCredentialsRejected",
    "StepUpRequired",
    "TenantKey",
    "TenantKmsError",
    "Throttled",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "VerificationFailed",
    "bearer",
    "local_claims",
]
