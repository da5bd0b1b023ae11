"""The admin HTTP API's shared plumbing: who the caller is, what they may touch, and how
every error becomes a response (DESIGN §3). Routes themselves live in the functions.

Authentication and body limits are checked before routing, so a caller without claims
learns nothing about routes and an oversized body is never parsed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from tenant_kms.errors import (
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TenantKmsError,
    Unauthorized,
    UnsupportedMediaType,
)
from tenant_kms.observability import logger
from tenant_kms.provider_config import describe_errors
from tenant_kms.settings import Settings

ADMIN_SCOPE = "tenant-kms/admin"
OPERATOR_SCOPE = "tenant-kms/operator"
TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_TENANT_ID = re.compile(TENANT_ID_PATTERN)

# Every admin route; template.yaml declares each as an HttpApi event (a test holds them equal).
ADMIN_ROUTES = (
    ("PUT", "/tenants/{tenant_id}/kms"),
    ("GET", "/tenants/{tenant_id}/kms"),
    ("GET", "/tenants/{tenant_id}/kms/onboarding"),
    ("POST", "/tenants/{tenant_id}/kms/verify"),
    ("POST", "/tenants/{tenant_id}/kms/unseal"),
    ("POST", "/tenants/{tenant_id}/keys"),
    ("GET", "/tenants/{tenant_id}/keys"),
    ("DELETE", "/tenants/{tenant_id}/keys/{version}"),
    ("POST", "/tenants/{tenant_id}/rewrap"),
    ("DELETE", "/tenants/{tenant_id}"),
)
# Public routes (no authorizer): the OIDC issuer documents Entra ID reads. Public keys only.
PUBLIC_ROUTES = (
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/jwks.json"),
)
_ROUTE_PATTERNS = [
    (method, re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "/?$")) for method, path in ADMIN_ROUTES
]


@dataclass(frozen=True)
class Caller:
    actor: str
    tenant_id: str | None
    scopes: frozenset[str]

    def may_act_on(self, tenant_id: str) -> bool:
        if OPERATOR_SCOPE in self.scopes:
            return True
        return ADMIN_SCOPE in self.scopes and self.tenant_id == tenant_id


def caller_of(event: dict[str, Any], authorizer: str = "jwt") -> Caller:
    """The caller, from the claims the deployment's authorizer put in the request context.

    Only API Gateway writes requestContext, and only the configured authorizer's part of it is
    read: a JWT authorizer's verified claims, or a Lambda authorizer's context.
    """
    found = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (found.get("jwt") or {}).get("claims") if authorizer == "jwt" else found.get("lambda")
    if not isinstance(claims, dict) or not claims:
        raise Unauthorized("authentication required")
    raw_scope = claims.get("scope") or ""
    if isinstance(raw_scope, list):
        scopes = frozenset(str(s) for s in raw_scope)
    else:
        scopes = frozenset(str(raw_scope).strip("[]").replace(",", " ").split())
    actor = str(claims.get("sub") or claims.get("client_id") or claims.get("username") or "unknown")
    tenant_id = claims.get("tenant_id")
    return Caller(actor=actor, tenant_id=str(tenant_id) if tenant_id else None, scopes=scopes)


def _path_tenant(event: dict[str, Any]) -> str | None:
    match = re.match(r"^/tenants/([^/]*)(?:/|$)", event.get("rawPath") or "")
    return unquote(match.group(1)) if match else None


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return len(base64.b64decode(body))
        except (binascii.Error, ValueError):
            raise InvalidRequest("body is not valid base64") from None
    return len(body.encode())


def _error_response(error: TenantKmsError) -> Response:
    return Response(
        status_code=error.status, content_type=content_types.APPLICATION_JSON, body=json.dumps(error.as_body())
    )


def json_response(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def no_content() -> Response:
    return Response(status_code=HTTPStatus.NO_CONTENT, content_type=None, body=None)


def admin_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.exception_handler(TenantKmsError)
    def _domain_error(error: TenantKmsError) -> Response:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    def _validation_error(error: RequestValidationError) -> Response:
        return _error_response(InvalidRequest(describe_errors(list(error.errors()))))

    @app.not_found
    def _no_route(_: NotFoundError) -> Response:
        method, path = app.current_event.http_method.upper(), app.current_event.path
        if any(pattern.match(path) for _, pattern in _ROUTE_PATTERNS):
            return _error_response(MethodNotAllowed(f"{method} is not allowed on {path}"))
        return _error_response(NotFound(f"no route for {method} {path}"))

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return _error_response(TenantKmsError("internal error; see the function's logs"))

    return app


def current_caller(app: APIGatewayHttpResolver) -> Caller:
    return app.context["caller"]


def handle_admin(app: APIGatewayHttpResolver, event: dict[str, Any], context: Any, settings: Settings) -> dict:
    """Authenticate, authorise and bound the request, then route it."""
    max_body_bytes = settings.max_body_bytes
    try:
        caller = caller_of(event, settings.admin_authorizer)
        tenant_id = _path_tenant(event)
        if tenant_id is not None:
            if not _TENANT_ID.match(tenant_id):
                raise InvalidRequest("tenant_id must be 1-64 letters, digits, '.', '_' or '-'")
            if not caller.may_act_on(tenant_id):
                raise Forbidden(f"caller may not act on tenant {tenant_id}")
        if _body_size(event) > max_body_bytes:
            raise PayloadTooLarge(f"body exceeds {max_body_bytes} bytes")
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        content_type = headers.get("content-type", "")
        if event.get("body") and content_type and not content_type.startswith("application/json"):
            raise UnsupportedMediaType("send the body as application/json")
    except TenantKmsError as error:
        return {
            "statusCode": error.status,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": json.dumps(error.as_body()),
            "isBase64Encoded": False,
        }
    app.append_context(caller=caller)
    return app.resolve(event, context)
