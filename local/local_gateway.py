"""A local stand-in for API Gateway and the Lambda invoke API, for running without Docker.

Reads the routes from template.yaml, builds the same HTTP API 2.0 events API Gateway
would, and hands them to the same handlers in-process. Claims come from the dev-only
``X-Local-Claims`` header (JSON), which exists only here: deployed functions read claims
that API Gateway's JWT authorizer verified.

Direct-invoke functions answer ``POST /2015-03-31/functions/<LogicalId>/invocations``,
the path the AWS SDK's Lambda client uses, so internal callers can point at this runner.
The admin API and the invoke API are served on separate ports, as `sam local start-api` and
`start-lambda` serve them, and every refusal is answered as those answer it (the test
tests/sam/test_runner_parity.py holds the two side by side): every request gets an answer.

The admin page's static files (admin/) are served under ``/admin/`` on the admin API's port,
so the page calls the API from its own origin.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local_tables import TEMPLATE, load_template

ROOT = TEMPLATE.parent
CLAIMS_HEADER = "x-local-claims"
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
ADMIN_PAGE = ROOT / "admin"
ADMIN_PREFIX = "/admin/"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass
class LocalContext:
    """The attributes of a Lambda context that the handlers and Powertools read."""

    function_name: str
    timeout_ms: int = 30_000
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - int((time.monotonic() - self.started) * 1000))


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    authorized: bool = True  # behind the API's default authorizer (not `Auth: {Authorizer: NONE}`)


def _route(method: str, path: str, function: str, *, authorized: bool = True) -> Route:
    # `{name+}` is greedy (the rest of the path, slashes included), as API Gateway matches it.
    names = tuple(name.rstrip("+") for name in re.findall(r"\{([^}]+)\}", path))
    pattern = re.sub(r"\{[^}]+\+\}", "(.+)", path)
    pattern = re.compile("^" + re.sub(r"\{[^}+]+\}", "([^/]+)", pattern) + "$")
    return Route(method.upper(), path, function, pattern, names, authorized)


def cors_configuration(template: dict[str, Any], admin_ui_origins: str) -> dict[str, Any] | None:
    """AdminApi's CorsConfiguration as deployed with AdminUiOrigins = ``admin_ui_origins``
    (None: no CORS, as with the parameter empty)."""
    configured = template["Resources"]["AdminApi"]["Properties"].get("CorsConfiguration")
    if not configured or not admin_ui_origins:
        return None
    condition, when_set, _ = configured["Fn::If"]
    assert condition == "HasAdminUiOrigins" and when_set["AllowOrigins"] == {
        "Fn::Split": [",", {"Ref": "AdminUiOrigins"}]
    }, "AdminApi's CorsConfiguration changed shape: update cors_configuration"
    return {**when_set, "AllowOrigins": admin_ui_origins.split(",")}


def with_cors(answer: Answer, cors: dict[str, Any] | None, headers: dict[str, str]) -> Answer:
    """The CORS headers API Gateway puts on an answer (a function's own are ignored)."""
    if cors is None:
        return answer
    status, answer_headers, body = answer
    answer_headers = {k: v for k, v in answer_headers.items() if not k.lower().startswith("access-control-")}
    origin = headers.get("origin")
    if origin is not None and origin in cors["AllowOrigins"]:
        answer_headers["Access-Control-Allow-Origin"] = origin
        if "access-control-request-method" in headers:  # a preflight
            answer_headers["Access-Control-Allow-Methods"] = ",".join(cors["AllowMethods"])
            answer_headers["Access-Control-Allow-Headers"] = ",".join(cors["AllowHeaders"])
            answer_headers["Access-Control-Max-Age"] = str(cors["MaxAge"])
        else:
            answer_headers["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
    return status, answer_headers, body


def routes_from_template(template: dict[str, Any] | None = None) -> tuple[list[Route], str | None]:
    """The HttpApi routes of every function, and the function serving ``$default``."""
    template = template or load_template()
    routes, default = [], None
    for logical_id, resource in template["Resources"].items():
        if not isinstance(resource, dict) or resource["Type"] != "AWS::Serverless::Function":
            continue  # Fn::ForEach blocks (alarms) are lists
        for event in (resource["Properties"].get("Events") or {}).values():
            if event["Type"] != "HttpApi":
                continue
            props = event.get("Properties") or {}
            if "Path" not in props:
                default = logical_id
            else:
                authorized = (props.get("Auth") or {}).get("Authorizer") != "NONE"
                routes.append(_route(props["Method"], props["Path"], logical_id, authorized=authorized))
    return routes, default


def load_handler_module(code_uri: str, handler: str, *, fresh_name: str | None = None) -> ModuleType:
    """Import a function's handler module from its CodeUri, as Lambda would."""
    module_name = handler.rsplit(".", 1)[0]
    path = ROOT / code_uri / f"{module_name}.py"
    name = fresh_name or f"tenant_kms_fn_{module_name}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def function_specs(template: dict[str, Any] | None = None) -> dict[str, tuple[str, str]]:
    template = template or load_template()
    return {
        logical_id: (resource["Properties"]["CodeUri"], resource["Properties"]["Handler"])
        for logical_id, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource["Type"] == "AWS::Serverless::Function"
    }


def http_event(
    method: str,
    raw_path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    route: Route | None = None,
    path_parameters: dict[str, str] | None = None,
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    now = time.time()
    route_key = f"{route.method} {route.path}" if route else "$default"
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    context: dict[str, Any] = {
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": headers.get("host", "127.0.0.1"),
        "domainPrefix": "local",
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if claims:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": encoded,
    }
    if query:
        event["queryStringParameters"] = dict(parse_qsl(query))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = text
    return event


Answer = tuple[int, dict[str, str], bytes]
JSON = "application/json"


def gateway_answer(status: int, message: str) -> Answer:
    """An answer API Gateway itself gives, before or instead of a function's."""
    return status, {"Content-Type": JSON}, json.dumps({"message": message}, separators=(",", ":")).encode()


def lambda_error(status: int, error_type: str, kind: str, message: str) -> Answer:
    """A refusal of the invoke API, as `sam local start-lambda` gives it (Lambda's shape: the
    x-amzn-errortype header the AWS SDK reads, and {"Type", "Message"})."""
    body = json.dumps({"Type": kind, "Message": message}).encode()
    return status, {"Content-Type": JSON, "x-amzn-errortype": error_type}, body


def claims_of(raw: str) -> dict[str, Any] | None:
    """The claims in an X-Local-Claims value: a non-empty JSON object, else none at all (the
    function then answers 401, as it does under sam local's LocalClaimsAuthorizer)."""
    try:
        claims = json.loads(raw)
    except ValueError:
        return None
    return claims if isinstance(claims, dict) and claims else None


def static_answer(method: str, target: str, root: Path) -> Answer | None:
    """A file of the admin page for a GET or HEAD under /admin/, else None (the API's request).
    Plain files only: no listing, nothing outside ``root``."""
    path = urlsplit(target).path
    if method not in ("GET", "HEAD") or not (path + "/").startswith(ADMIN_PREFIX):
        return None
    if not path.startswith(ADMIN_PREFIX):  # /admin: the page's address ends with a slash
        return 308, {"Location": ADMIN_PREFIX}, b""
    relative = unquote(path[len(ADMIN_PREFIX) :]) or "index.html"
    file = (root / relative).resolve()
    if not file.is_relative_to(root.resolve()) or not file.is_file() or file.suffix not in STATIC_TYPES:
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"Not Found"
    # The page must never run an old copy of its script against a newer API.
    return 200, {"Content-Type": STATIC_TYPES[file.suffix], "Cache-Control": "no-store"}, file.read_bytes()


def function_name_of(identifier: str) -> str:
    """The function an invoke path names: a name, name:qualifier, or a (partial) function ARN."""
    if ":function:" in identifier:
        identifier = identifier.split(":function:", 1)[1]
    return identifier.split(":", 1)[0]


class Gateway:
    def __init__(self, template: dict[str, Any] | None = None, *, admin_ui_origins: str = "") -> None:
        template = template or load_template()
        self.routes, self.default_function = routes_from_template(template)
        self.cors = cors_configuration(template, admin_ui_origins)
        self.modules = {
            logical_id: load_handler_module(code_uri, handler)
            for logical_id, (code_uri, handler) in function_specs(template).items()
        }
        default_timeout = template["Globals"]["Function"].get("Timeout", 3)
        self.timeouts_ms = {
            logical_id: 1000 * int(template["Resources"][logical_id]["Properties"].get("Timeout", default_timeout))
            for logical_id in self.modules
        }

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                # As API Gateway does: path parameters arrive percent-decoded, once.
                return route, {name: unquote(value) for name, value in zip(route.names, found.groups(), strict=True)}
        return None, {}

    def handle_http(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """The admin API, as API Gateway answers it, CORS headers included."""
        answer = self._handle_http(method, target, headers, body)
        return with_cors(answer, self.cors, {k.lower(): v for k, v in headers.items()})

    def _handle_http(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """The authorizer first, then the function."""
        split = urlsplit(target)
        route, params = self.match(method, split.path)
        function = route.function if route else self.default_function
        raw_claims = {k.lower(): v for k, v in headers.items()}.get(CLAIMS_HEADER)
        authorized = route.authorized if route else True  # $default sits behind the default authorizer
        if authorized and not raw_claims:
            # The authorizer's identity source is missing: no function runs.
            return gateway_answer(401, "Unauthorized")
        forwarded = {k: v for k, v in headers.items() if k.lower() != CLAIMS_HEADER}
        event = http_event(
            method,
            split.path,
            query=split.query,
            headers=forwarded,
            body=body,
            route=route,
            path_parameters=params,
            claims=claims_of(raw_claims) if authorized else None,
        )
        try:
            result = self.modules[function].lambda_handler(event, LocalContext(function))
            payload = result.get("body") or ""
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
            return int(result["statusCode"]), dict(result.get("headers") or {}), data
        except Exception:  # a function that fails is API Gateway's 500, never a dropped connection
            traceback.print_exc()
            return gateway_answer(500, "Internal Server Error")

    def handle_invoke(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """The Lambda invoke API, refusals in the order and words of `sam local start-lambda`."""
        split = urlsplit(target)
        invoke = INVOKE_PATH.match(split.path)
        if invoke is None:
            return lambda_error(404, "PathNotFoundLocally", "LocalService", "PathNotFoundException")
        if method != "POST":
            return lambda_error(405, "MethodNotAllowedLocally", "LocalService", "MethodNotAllowedException")
        try:
            payload = json.loads(body or b"{}")
        except ValueError:  # UnicodeDecodeError included
            return lambda_error(
                400,
                "InvalidRequestContent",
                "User",
                "Could not parse request body into json: No JSON object could be decoded",
            )
        if split.query:
            return lambda_error(400, "InvalidRequestContent", "User", "Query Parameters are not supported")
        headers = {k.lower(): v for k, v in headers.items()}
        log_type = headers.get("x-amz-log-type", "None")
        if log_type != "None":
            message = f"log-type: {log_type} is not supported. None is only supported."
            return lambda_error(501, "NotImplemented", "LocalService", message)
        name = function_name_of(unquote(invoke.group(1)))
        module = self.modules.get(name)
        if module is None:
            message = f"Function not found: arn:aws:lambda:us-west-2:012345678901:function:{name}"
            return lambda_error(404, "ResourceNotFound", "User", message)
        invocation_type = headers.get("x-amz-invocation-type", "RequestResponse")
        if invocation_type == "Event":
            threading.Thread(target=self._run, args=(name, module, payload), daemon=True).start()
            return 202, {"Content-Type": JSON}, b""
        if invocation_type != "RequestResponse":
            message = (
                f"invocation-type: {invocation_type} is not supported. Only Event and RequestResponse are supported."
            )
            return lambda_error(501, "NotImplemented", "LocalService", message)
        result, failed = self._run(name, module, payload)
        answer_headers = {"Content-Type": JSON}
        if failed:
            answer_headers["X-Amz-Function-Error"] = "Unhandled"
        return 200, answer_headers, json.dumps(result).encode()

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """An event source's invocation (local_queues.EventSource), with the function's own
        timeout: its answer; a failed function raises, so the event source leaves the batch."""
        result, failed = self._run(function, self.modules[function], event, self.timeouts_ms[function])
        if failed:
            raise RuntimeError(f"{function} failed: {result['errorType']}: {result['errorMessage']}")
        return result

    @staticmethod
    def _run(name: str, module: ModuleType, payload: Any, timeout_ms: int = 30_000) -> tuple[Any, bool]:
        """The function's result, or Lambda's account of its failure (with X-Amz-Function-Error)."""
        context = LocalContext(name, timeout_ms=timeout_ms)
        try:
            return module.lambda_handler(payload, context), False
        except Exception as error:  # Lambda reports a failed function, it does not drop the call
            return {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "requestId": context.aws_request_id,
                "stackTrace": traceback.format_tb(error.__traceback__),
            }, True


def serve(
    gateway: Gateway,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    api: str = "http",
    admin_page: Path | None = None,
) -> ThreadingHTTPServer:
    """``api`` "http" serves the admin API (as `sam local start-api`), "invoke" the Lambda invoke
    API (as `sam local start-lambda`). ``admin_page``: a folder served under /admin/ beside the API."""
    api_handle = {"http": gateway.handle_http, "invoke": gateway.handle_invoke}[api]

    def handle(method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        page = static_answer(method, target, admin_page) if admin_page else None
        return page or api_handle(method, target, headers, body)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _dispatch(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self.send_error(400, "Bad Content-Length")
                return
            body = self.rfile.read(length) if length > 0 else b""
            try:
                status, headers, data = handle(self.command, self.path, dict(self.headers.items()), body)
            except Exception:  # every request gets an answer
                traceback.print_exc()
                status, headers, data = gateway_answer(500, "Internal Server Error")
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(f"gateway: {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
