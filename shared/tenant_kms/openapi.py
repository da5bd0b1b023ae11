"""What the admin routes answer, as the OpenAPI document shows it: each route declares its
answers with ``answers(...)`` on its decorator; the schemas those answers name are here.

Plain data, no imports beyond the standard library: the admin functions import it at cold
start. local/openapi_document.py builds docs/openapi.json from the functions' resolvers.
"""

from __future__ import annotations

from typing import Any

SECURITY_SCHEME = "TenantKmsJwt"
SECURITY_SCHEMES = {
    SECURITY_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Claims: sub, tenant_id, scope (tenant-kms/admin or tenant-kms/operator), auth_time",
    }
}
REF = "#/components/schemas/"
JSON = "application/json"

# Every error code an admin route answers, by HTTP status.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_request", "static_credentials_rejected"),
    401: ("unauthorized", "step_up_required"),
    403: ("forbidden",),
    404: ("not_found",),
    409: ("conflict",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    422: ("verification_failed", "idempotency_key_reused"),
    423: ("sealed",),
    500: ("internal_error", "integrity_error"),
    503: ("provider_unavailable", "unavailable"),
}
_ERROR_MEANING = {
    400: "Bad input (the message says what is accepted), or a static credential in the body",
    401: 'No usable token (API Gateway itself answers {"message": "Unauthorized"} when none is sent)',
    403: "The token's claims do not allow acting on this tenant",
    404: "Nothing of that name",
    409: "The state does not allow it, or changed concurrently (retry)",
    413: "The body is larger than the deployment's MAX_BODY_BYTES",
    415: "The body is not sent as application/json",
    422: "The provider refused the probe or the unwrap, or an Idempotency-Key was reused for another request",
    423: "The tenant is sealed: its wrapping key refused an unwrap",
    500: "A fault of the service (see its logs); never the answer to bad input",
    503: "The wrapping provider or the service's own tables stayed unavailable; retry after Retry-After",
}
# Every route under /tenants/ may answer these: checked before any route runs.
_BEFORE_ROUTING = (400, 401, 403, 413, 500)

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key within 24 h answers the first answer and provisions nothing",
    "schema": {"type": "string", "pattern": '^"?[A-Za-z0-9_.:-]{1,128}"?$'},
}
JOB_LOCATION = {
    "description": "The job's path: /tenants/{tenant_id}/rewrap/{job_id} (under the stage, if any)",
    "schema": {"type": "string"},
}
_RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "string", "pattern": "^[0-9]+$"}}
_WWW_AUTHENTICATE = {
    "description": 'With step_up_required: Bearer error="insufficient_user_authentication", max_age=<seconds> '
    "(RFC 9470): log in again, then retry",
    "schema": {"type": "string"},
}


def _content(schema: str) -> dict[str, Any]:
    return {JSON: {"schema": {"$ref": REF + schema}}}


def error_schema_name(status: int) -> str:
    return f"Error{status}"


def answers(
    status: int,
    schema: str | None,
    *errors: int,
    description: str,
    headers: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of an admin route's decorator: its success ``status`` with the body
    ``schema`` (None: no body), the error statuses it answers besides those every tenant route
    may answer, the bearer token it needs, and the ``parameters`` it reads itself."""
    success: dict[str, Any] = {"description": description}
    if schema is not None:
        success["content"] = _content(schema)
    if headers:
        success["headers"] = headers
    responses: dict[int, Any] = {status: success}
    for code in sorted({*_BEFORE_ROUTING, *errors}):
        answer: dict[str, Any] = {"description": _ERROR_MEANING[code], "content": _content(error_schema_name(code))}
        if code == 503:
            answer["headers"] = {"Retry-After": _RETRY_AFTER}
        if code == 401:
            answer["headers"] = {"WWW-Authenticate": _WWW_AUTHENTICATE}
        responses[code] = answer
    documented: dict[str, Any] = {"responses": responses, "security": [{SECURITY_SCHEME: []}]}
    if parameters:
        documented["openapi_extensions"] = {"parameters": parameters}
    return documented


def public(schema: str, *errors: int, description: str) -> dict[str, Any]:
    """Keyword arguments of a public route's decorator (no token)."""
    responses: dict[int, Any] = {200: {"description": description, "content": _content(schema)}}
    for code in errors:
        responses[code] = {"description": _ERROR_MEANING[code], "content": _content(error_schema_name(code))}
    return {"responses": responses}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    required = [name for name in properties if name not in optional]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False, **extra}


_TEXT = {"type": "string"}
_TIME = {"type": "string", "description": "ISO 8601, UTC"}
_COUNT = {"type": "integer", "minimum": 0}
_VERSION = {"type": "integer", "minimum": 1, "maximum": 1_000_000_000}
_TENANT_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_JOB_ID = {"type": "string", "pattern": r"^[0-9a-f]{32}$"}
_CONFIGS = [
    {"$ref": REF + name} for name in ("EmptyConfig", "CustomerAwsConfig", "CustomerGcpConfig", "CustomerAzureConfig")
]

ERROR_DETAIL = _object(
    {
        "code": {"type": "string", "enum": sorted({code for codes in ERROR_CODES.values() for code in codes})},
        "message": {"type": "string", "description": "What was wrong and what is accepted; never key material"},
        "retry_after_seconds": {"type": "integer", "minimum": 0, "description": "With unavailable only"},
    },
    optional=("retry_after_seconds",),
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _object({"error": {"$ref": REF + "ErrorDetail"}}, description='Every refusal: {"error": {code, message}}'),
    "ErrorDetail": ERROR_DETAIL,
    "ConfigView": _object(
        {
            "tenant_id": _TENANT_ID,
            "provider": _nullable({"$ref": REF + "Provider"}),
            "config": {"anyOf": [*_CONFIGS, {"type": "null"}], "description": "References only, never credentials"},
            "status": {"type": "string", "enum": ["active", "sealed", "unconfigured"]},
            "sealed_reason": _nullable(_TEXT),
            "sealed_at": _nullable(_TIME),
            "active_version": _nullable(_VERSION),
            "last_verified_at": _nullable(_TIME),
            "last_verify_error": _nullable(_TEXT),
            "session_ttl_seconds": _nullable({"type": "integer", "minimum": 1}),
        },
        optional=("sealed_at",),
        description="A tenant's config and status (unconfigured: every other field null)",
    ),
    "VerifyResult": _object(
        {"ok": {"type": "boolean"}, "last_verified_at": _nullable(_TIME), "last_verify_error": _nullable(_TEXT)}
    ),
    "Provisioned": _object({"version": _VERSION, "status": {"type": "string", "const": "active"}}),
    "VersionView": _object(
        {
            "version": _VERSION,
            "status": {"type": "string", "enum": ["active", "retired", "destroyed"]},
            "provider": {"$ref": REF + "Provider"},
            "key_id": _nullable({**_TEXT, "description": "The wrapping key that wrapped it, as resolved"}),
            "created_at": _TIME,
            "retired_at": _nullable(_TIME),
            "destroyed_at": _nullable(_TIME),
            "records": {**_COUNT, "description": "Tenant data records under this version"},
            "encryptions": {**_COUNT, "description": "Records ever sealed under this version"},
        }
    ),
    "VersionList": _object({"versions": {"type": "array", "items": {"$ref": REF + "VersionView"}}}),
    "RewrapJob": _object(
        {
            "job_id": _JOB_ID,
            "tenant_id": _TENANT_ID,
            "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
            "migrated": {**_COUNT, "description": "Records this job moved to the active version"},
            "skipped": {**_COUNT, "description": "Records a caller rewrote meanwhile (the caller's write wins)"},
            "remaining": _nullable({**_COUNT, "description": "Records still under retired versions"}),
            "started_at": _TIME,
            "updated_at": _TIME,
            "finished_at": _nullable(_TIME),
            "error": _nullable(_object({"code": _TEXT, "message": _TEXT})),
        }
    ),
    "Onboarding": _object(
        {
            "tenant_id": _TENANT_ID,
            "aws": _object({"principal_arn": _nullable(_TEXT), "external_id": _TEXT}),
            "gcp": _object({"principal": _nullable(_TEXT), "attribute_condition": _nullable(_TEXT)}),
            "azure": _object({"issuer": _nullable(_TEXT), "subject": _TEXT, "audience": _TEXT}),
        },
        description="What the customer's cloud must trust so that this tenant, and no other, uses their key",
    ),
    "OpenIdConfiguration": {"type": "object", "required": ["issuer", "jwks_uri"]},
    "Jwks": {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array"}}},
}


def _error(status: int) -> dict[str, Any]:
    codes = {"properties": {"error": {"properties": {"code": {"enum": list(ERROR_CODES[status])}}}}}
    return {"allOf": [{"$ref": REF + "Error"}, codes]}


SCHEMAS.update({error_schema_name(status): _error(status) for status in ERROR_CODES})
# API Gateway's JWT authorizer refuses a request without a token before any function runs.
SCHEMAS["GatewayMessage"] = _object({"message": _TEXT})
SCHEMAS[error_schema_name(401)] = {"oneOf": [_error(401), {"$ref": REF + "GatewayMessage"}]}

# The path parameters, each checked before the route runs (else 400).
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "tenant_id": {
        **_TENANT_ID,
        "description": "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    },
    "version": {
        "type": "string",
        "pattern": "^[1-9][0-9]{0,9}$",
        "description": "A key version from 1 to 1000000000 in plain decimal digits (3, not 03 or 3.0)",
    },
    "job_id": {**_JOB_ID, "description": "A job id as POST /tenants/{tenant_id}/rewrap answered it"},
}
