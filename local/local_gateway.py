"""A local stand-in for API Gateway and the Lambda invoke API, for running without Docker.

Reads the routes from template.yaml, builds the same HTTP API 2.0 events API Gateway
would, and hands them to the same handlers in-process. Claims come from the dev-only
``X-Local-Claims`` header (JSON), which exists only here: deployed functions read claims
that API Gateway's JWT authorizer verified.

Direct-invoke functions answer ``POST /2015-03-31/functions/<LogicalId>/invocations``,
the path the AWS SDK's Lambda client uses, so internal callers can point at this runner.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local_tables import TEMPLATE, load_template

ROOT = TEMPLATE.parent
CLAIMS_HEADER = "x-local-claims"
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


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


def _route(method: str, path: str, function: str) -> Route:
    names = tuple(re.findall(r"\{([^}]+)\}", path))
    pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "([^/]+)", path) + "$")
    return Route(method.upper(), path, function, pattern, names)


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
                routes.append(_route(props["Method"], props["Path"], logical_id))
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


class Gateway:
    def __init__(self, template: dict[str, Any] | None = None) -> None:
        template = template or load_template()
        self.routes, self.default_function = routes_from_template(template)
        self.modules = {
            logical_id: load_handler_module(code_uri, handler)
            for logical_id, (code_uri, handler) in function_specs(template).items()
        }

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                # As API Gateway does: path parameters arrive percent-decoded, once.
                return route, {name: unquote(value) for name, value in zip(route.names, found.groups(), strict=True)}
        return None, {}

    def handle_http(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        split = urlsplit(target)
        invoke = INVOKE_PATH.match(split.path)
        if invoke and method == "POST":
            return self.invoke(invoke.group(1), body)
        route, params = self.match(method, split.path)
        function = route.function if route else self.default_function
        claims = None
        raw_claims = {k.lower(): v for k, v in headers.items()}.get(CLAIMS_HEADER)
        if raw_claims:
            try:
                claims = json.loads(raw_claims)
            except ValueError:
                return (
                    400,
                    {"Content-Type": "application/json"},
                    json.dumps(
                        {"error": {"code": "invalid_request", "message": f"{CLAIMS_HEADER} must be JSON"}}
                    ).encode(),
                )
        forwarded = {k: v for k, v in headers.items() if k.lower() != CLAIMS_HEADER}
        event = http_event(
            method,
            split.path,
            query=split.query,
            headers=forwarded,
            body=body,
            route=route,
            path_parameters=params,
            claims=claims,
        )
        result = self.modules[function].lambda_handler(event, LocalContext(function))
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        return result["statusCode"], result.get("headers") or {}, data

    def invoke(self, function: str, body: bytes) -> tuple[int, dict, bytes]:
        module = self.modules.get(function)
        if module is None:
            return 404, {"Content-Type": "application/json"}, b'{"Message": "Function not found"}'
        result = module.lambda_handler(json.loads(body or b"{}"), LocalContext(function))
        return 200, {"Content-Type": "application/json"}, json.dumps(result).encode()


def serve(gateway: Gateway, host: str = "127.0.0.1", port: int = 3000) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, data = gateway.handle_http(self.command, self.path, dict(self.headers.items()), body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(f"gateway: {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
