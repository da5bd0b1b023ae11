"""The admin HTTP API's shared plumbing: who the caller is, what they may touch, and how
every error becomes a response. Routes themselves live in the functions.

Authentication, the routed tenant, step-up and body limits are checked before routing, so a
caller without claims learns nothing about routes and an oversized body is never parsed.

The tenant a request acts on is the one API Gateway routed (``pathParameters``, decoded
once), never a re-reading of the path: a named stage prefixes rawPath, and the path still
holds the percent-encoding. Handlers get it with ``routed_tenant(app)``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from kms_wrapping.deadline import Deadline, lambda_time_left, running_until
from tenant_kms import untrusted_json
from tenant_kms.errors import (
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StepUpRequired,
    TenantKmsError,
    Unauthorized,
    UnsupportedMediaType,
)
from tenant_kms.observability import logger
from tenant_kms.openapi import SECURITY_SCHEMES
from tenant_kms.provider_config import describe_errors
from tenant_kms.settings import Settings

ADMIN_SCOPE = "tenant-kms/admin"
OPERATOR_SCOPE = "tenant-kms/operator"
TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_TENANT_ID = re.compile(TENANT_ID_PATTERN)
MAX_KEY_VERSION = 1_000_000_000

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
    ("GET", "/tenants/{tenant_id}/rewrap/{job_id}"),
    ("DELETE", "/tenants/{tenant_id}"),
)
DECLARED_ROUTE_KEYS = frozenset(f"{method} {path}" for method, path in ADMIN_ROUTES)
# The routes that take a body, and what it holds; every other route refuses one.
BODY_ROUTES = {
    "PUT /tenants/{tenant_id}/kms": 'send a JSON object {"provider": "<provider>", "config": {...}}',
}
JSON_MEDIA_TYPE = "application/json"
# Public routes (no authorizer): the OIDC issuer documents Entra ID reads. Public keys only.
PUBLIC_ROUTES = (
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/jwks.json"),
)
# A browser's CORS preflight carries no token: public, served by the public issuer function.
PREFLIGHT_ROUTE = ("OPTIONS", "/{proxy+}")
# Routes that change what protects a tenant's keys need a fresh login (RFC 9470): the
# Settings field holding each one's maximum login age.
STEP_UP_ROUTES = {
    "PUT /tenants/{tenant_id}/kms": "step_up_max_age_seconds",
    "POST /tenants/{tenant_id}/keys": "step_up_max_age_seconds",
    "DELETE /tenants/{tenant_id}/keys/{version}": "step_up_max_age_seconds",
    "DELETE /tenants/{tenant_id}": "step_up_max_age_seconds",
    "POST /tenants/{tenant_id}/kms/unseal": "unseal_step_up_max_age_seconds",
}
# API Gateway's HTTP API answers 503 itself once an integration takes longer than this.
GATEWAY_TIMEOUT_SECONDS = 30
# How far an identity provider's clock may run ahead of ours.
AUTH_TIME_SKEW_SECONDS = 60
_ROUTE_PATTERNS = [
    (method, re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "/?$")) for method, path in ADMIN_ROUTES
]


@dataclass(frozen=True)
class Caller:
    actor: str
    tenant_id: str | None
    scopes: frozenset[str]
    auth_time: Any = None  # the claim as the authorizer passed it (JWT claims arrive as strings)

    def may_act_on(self, tenant_id: str) -> bool:
        if OPERATOR_SCOPE in self.scopes:
            return True
        return ADMIN_SCOPE in self.scopes and self.tenant_id == tenant_id


def _member(parent: Any, name: str) -> Any:
    return parent.get(name) if isinstance(parent, dict) else None


def caller_of(event: dict[str, Any], authorizer: str = "jwt") -> Caller:
    """The caller, from the claims the deployment's authorizer put in the request context.

    Only API Gateway writes requestContext, and only the configured authorizer's part of it is
    read: a JWT authorizer's verified claims, or a Lambda authorizer's context.
    """
    claims = _member(_member(event, "requestContext"), "authorizer")
    claims = _member(_member(claims, "jwt"), "claims") if authorizer == "jwt" else _member(claims, "lambda")
    if not isinstance(claims, dict) or not claims:
        raise Unauthorized("authentication required: send a bearer token from the deployment's issuer")
    raw_scope = claims.get("scope") or ""
    if isinstance(raw_scope, list):
        scopes = frozenset(str(s) for s in raw_scope)
    else:
        scopes = frozenset(str(raw_scope).strip("[]").replace(",", " ").split())
    actor = str(claims.get("sub") or claims.get("client_id") or claims.get("username") or "unknown")
    # Written to audit entries and items: text only, whatever the token carried.
    actor = actor.encode("utf-8", "backslashreplace").decode("utf-8")
    tenant_id = claims.get("tenant_id")
    return Caller(
        actor=actor,
        tenant_id=str(tenant_id) if tenant_id else None,
        scopes=scopes,
        auth_time=claims.get("auth_time"),
    )


def routed_tenant_of(event: dict[str, Any]) -> str | None:
    """The tenant API Gateway routed the request to, validated; None on a route without one."""
    tenant_id = (event.get("pathParameters") or {}).get("tenant_id")
    if tenant_id is None:
        return None
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise InvalidRequest("tenant_id must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return tenant_id


def key_version(segment: str) -> int:
    """A version named in a path: a positive integer in canonical decimal, nothing else, so
    one number is never read from two spellings (``1.0``, ``01``, ``1_0``, ``+1``)."""
    if not re.fullmatch(r"[1-9][0-9]{0,9}", segment) or int(segment) > MAX_KEY_VERSION:
        raise InvalidRequest(
            f"version must be a whole number from 1 to {MAX_KEY_VERSION} written in plain decimal digits "
            "(no sign, leading zeros, separators or decimal point), such as 3"
        )
    return int(segment)


def _login_time(auth_time: Any) -> float | None:
    if isinstance(auth_time, bool):
        return None
    if isinstance(auth_time, str) and re.fullmatch(r"\d{1,12}", auth_time.strip()):
        return float(auth_time)
    if isinstance(auth_time, int) and abs(auth_time) < 10**12:  # a larger int is no float
        return float(auth_time)
    if isinstance(auth_time, float) and math.isfinite(auth_time):
        return auth_time
    return None


def require_fresh_login(caller: Caller, max_age: int, now: float) -> None:
    """RFC 9470: the login behind the token is no older than ``max_age`` seconds."""
    login = _login_time(caller.auth_time)
    if login is None:
        raise StepUpRequired("this route needs claim auth_time: log in again", max_age)
    if login > now + AUTH_TIME_SKEW_SECONDS:
        raise StepUpRequired("claim auth_time lies in the future: log in again", max_age)
    if now - login > max_age:
        raise StepUpRequired(f"this route needs a login from the last {max_age} seconds: log in again", max_age)


def _body_bytes(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise InvalidRequest("body must be text")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("body is not valid base64") from None
    return body.encode("utf-8", "surrogatepass")


def _media_type(headers: Any) -> str:
    if not isinstance(headers, dict):
        return ""
    found = [v for k, v in headers.items() if isinstance(k, str) and k.lower() == "content-type"]
    if not found or not isinstance(found[0], str):
        return ""
    return found[0].split(";", 1)[0].strip().lower()


def _checked_body(event: dict[str, Any], route_key: Any, max_body_bytes: int) -> dict[str, Any]:
    """The body fits the route before anything parses it: bounded, UTF-8 JSON with the JSON
    media type where the route takes one, and none at all where it does not.

    A route that takes a body is resolved with it as checked (plain text, media type
    spelled as Powertools expects). A request whose route key is not the route it names is
    never served (404/405), but Powertools may parse its body before refusing it: it gets
    the body only when that is safe JSON, and no media type to parse it by."""
    body = _body_bytes(event)
    if len(body) > max_body_bytes:
        raise PayloadTooLarge(f"body exceeds {max_body_bytes} bytes")
    method = str(_member(_member(event.get("requestContext"), "http"), "method") or "").upper()
    served = route_key in DECLARED_ROUTE_KEYS and route_key.split(" ", 1)[0] == method
    if served and route_key not in BODY_ROUTES:
        if body:
            raise InvalidRequest(f"{route_key} takes no body: send none (not even {{}})")
        return event
    sent = event.get("headers")
    headers = {k: v for k, v in (sent if isinstance(sent, dict) else {}).items() if str(k).lower() != "content-type"}
    if not served:
        try:
            if body:
                untrusted_json.parse(body.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError too: nothing may parse it, and nothing needs to
            return {**event, "headers": headers, "body": None, "isBase64Encoded": False}
        return {**event, "headers": headers}
    accepted = BODY_ROUTES[route_key]
    if body and _media_type(event.get("headers")) != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(f"send the body as {JSON_MEDIA_TYPE} (header Content-Type: {JSON_MEDIA_TYPE})")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"body is not UTF-8 text; {accepted}") from None
    try:
        if text:
            untrusted_json.parse(text)
    except untrusted_json.UnsafeJson as exc:
        raise InvalidRequest(f"{exc}; {accepted}") from None
    return {**event, "body": text, "isBase64Encoded": False, "headers": {**headers, "content-type": JSON_MEDIA_TYPE}}


def _error_response(error: TenantKmsError) -> Response:
    return Response(
        status_code=error.status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(error.as_body()),
        headers=error.headers or None,
    )


def _declared_route_key(route: Any) -> str | None:
    """``METHOD /path/{param}`` of a route registered under /tenants/; None for any other."""
    if route is None or not route.path.startswith("/tenants/") or not route.rule.groups:
        return None  # the not-found route matches the request's own path and has no groups
    return f"{route.method} {route.openapi_path}"


def _tenant_was_checked(app: APIGatewayHttpResolver, next_middleware: Callable) -> Response:
    """Fail closed: a tenant route runs only when it is the route API Gateway routed and whose
    tenant was checked before routing."""
    route_key = _declared_route_key(app.context.get("_route"))
    if route_key is not None and (
        app.context.get("routed_tenant") is None or app.context.get("route_key") != route_key
    ):
        event = app.current_event
        raise NotFound(f"no route for {event.http_method.upper()} {event.path}")
    return next_middleware(app)


def json_response(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def no_content() -> Response:
    return Response(status_code=HTTPStatus.NO_CONTENT, content_type=None, body=None)


def admin_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    app.configure_openapi(security_schemes=SECURITY_SCHEMES)  # what its routes' documents name
    app.use(middlewares=[_tenant_was_checked])

    @app.exception_handler(TenantKmsError)
    def _domain_error(error: TenantKmsError) -> Response:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    def _validation_error(error: RequestValidationError) -> Response:
        accepted = BODY_ROUTES.get(app.context.get("route_key"))
        message = describe_errors(list(error.errors()))
        return _error_response(InvalidRequest(f"{message}; {accepted}" if accepted else message))

    @app.exception_handler(RequestUnsupportedContentType)
    def _media_type_error(_: RequestUnsupportedContentType) -> Response:
        return _error_response(UnsupportedMediaType(f"send the body as {JSON_MEDIA_TYPE}"))

    @app.not_found
    def _no_route(_: NotFoundError) -> Response:
        method, path = app.current_event.http_method.upper(), app.current_event.path
        allowed = sorted({m for m, pattern in _ROUTE_PATTERNS if pattern.match(path)})
        if allowed:
            error = MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}")
            error.headers = {"Allow": ", ".join(allowed)}
            return _error_response(error)
        return _error_response(NotFound(f"no route for {method} {path}"))

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return _error_response(TenantKmsError("internal error; see the function's logs"))

    return app


def current_caller(app: APIGatewayHttpResolver) -> Caller:
    return app.context["caller"]


def routed_tenant(app: APIGatewayHttpResolver) -> str:
    """The tenant the current request acts on: checked against the caller before routing."""
    return app.context["routed_tenant"]


def route_deadline(event: dict[str, Any], context: Any, budget: float, clock: Callable[[], float]) -> Deadline:
    """When the route must have answered: ``budget`` seconds after API Gateway received the
    request, and never later than the function may run."""
    now = clock()
    received = _member(event.get("requestContext"), "timeEpoch")
    start = now
    # The gateway's receipt time counts only when a live gateway can still be waiting for this
    # answer; a replayed or sample event carries an older one.
    live = isinstance(received, int) and not isinstance(received, bool)
    if live and now - GATEWAY_TIMEOUT_SECONDS <= received / 1000 <= now:
        start = received / 1000
    at = start + budget
    left = lambda_time_left(context)
    if left is not None:
        at = min(at, now + left)
    return Deadline(at=at, clock=clock)


def handle_admin(
    app: APIGatewayHttpResolver,
    event: dict[str, Any],
    context: Any,
    settings: Settings,
    clock: Callable[[], float] = time.time,
) -> dict:
    """Authenticate, authorise and bound the request, then route it under the route's deadline."""
    deadline = route_deadline(event, context, settings.admin_route_deadline_seconds, clock)
    max_body_bytes = settings.max_body_bytes
    route_key = event.get("routeKey")
    try:
        caller = caller_of(event, settings.admin_authorizer)
        tenant_id = routed_tenant_of(event)
        if tenant_id is not None and not caller.may_act_on(tenant_id):
            raise Forbidden(
                f"caller may not act on tenant {tenant_id}: that needs scope {ADMIN_SCOPE} with claim "
                f"tenant_id {tenant_id}, or scope {OPERATOR_SCOPE}"
            )
        if route_key in STEP_UP_ROUTES:
            require_fresh_login(caller, getattr(settings, STEP_UP_ROUTES[route_key]), clock())
        event = _checked_body(event, route_key, max_body_bytes)
    except TenantKmsError as error:
        return {
            "statusCode": error.status,
            "headers": {"Content-Type": content_types.APPLICATION_JSON, **error.headers},
            "body": json.dumps(error.as_body()),
            "isBase64Encoded": False,
        }
    app.append_context(caller=caller, routed_tenant=tenant_id, route_key=route_key)
    with running_until(deadline):
        return app.resolve(event, context)
