"""Builds docs/openapi.json, the admin HTTP API's OpenAPI 3.1 document, from the resolvers of
the functions that serve its routes (Powertools generates each function's part, merged here).

    make openapi            # writes docs/openapi.json
    make openapi-check      # fails if docs/openapi.json is not what the code generates

What Powertools cannot see from a route is declared on its decorator
(``tenant_kms.openapi.answers``: statuses, bodies, headers, the bearer token) or added here
once for every route: the path parameters as the API checks them, and the schemas the answers
name. Powertools documents its own request validation as a 422; the admin routes answer it
as 400 ``invalid_request``, so that 422 is dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "openapi.json"
TITLE = "Tenant KMS admin API"
DESCRIPTION = """\
A versioned master key per tenant, wrapped by the key the tenant chooses.

Every route under /tenants/ needs a JWT from the deployment's issuer (API Gateway's JWT
authorizer verifies it). Claim `scope` (space-separated) holds `tenant-kms/admin` to act on
the tenant named by claim `tenant_id`, or `tenant-kms/operator` to act on any tenant.
PUT …/kms, POST …/keys, DELETE …/keys/{version}, DELETE /tenants/{tenant_id} and
POST …/kms/unseal also need a recent login: claim `auth_time` no older than the deployment's
StepUpMaxAgeSeconds (120 s for unseal), else 401 `step_up_required`.

Every refusal is `{"error": {"code", "message"}}`; each status lists its codes. Only
PUT …/kms takes a body; any other route refuses one (400).

Internal services use direct Lambda invoke (UnwrapFunction, TenantDataFunction), not this API."""
# Powertools' own validation answer and its schemas: not what these routes answer.
POWERTOOLS_ONLY = ("HTTPValidationError", "ValidationError", "ResponseValidationError")
# Handler modules read their settings at import; the document depends on none of them.
IMPORT_SETTINGS = {
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "none",
    "AWS_SECRET_ACCESS_KEY": "none",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "CONFIG_TABLE": "configs",
    "KEY_VERSION_TABLE": "key-versions",
    "TENANT_DATA_TABLE": "tenant-data",
    "IDEMPOTENCY_TABLE": "idempotency",
    "JOB_TABLE": "jobs",
    "SWEEP_TABLE": "sweeps",
    "MASTER_KEY_B64": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def _project_version() -> str:
    found = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    return found.group(1) if found else "0"


def resolvers() -> list[Any]:
    """The resolver of every function that serves an HttpApi route, in template order."""
    for name, value in IMPORT_SETTINGS.items():
        os.environ.setdefault(name, value)
    from local_gateway import function_specs, load_handler_module, routes_from_template
    from local_tables import load_template

    template = load_template()
    serving = {route.function for route in routes_from_template(template)[0]}
    apps = []
    for logical_id, (code_uri, handler) in function_specs(template).items():
        if logical_id in serving:
            module = load_handler_module(code_uri, handler, fresh_name=f"openapi_{logical_id}")
            apps.append(module.app)
    return apps


def _tidy(operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    schema = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema") or {}
    if schema.get("$ref", "").endswith("/HTTPValidationError"):
        del responses["422"]
    for answer in responses.values():
        if answer.get("content") == {"application/json": {}}:
            del answer["content"]  # an answer without a body (204)
    # Path parameters are documented once per path, as the API checks them.
    kept = [p for p in operation.get("parameters", []) if p["in"] != "path"]
    if kept:
        operation["parameters"] = kept
    else:
        operation.pop("parameters", None)


def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_references(value) for value in node))
    return set()


def build() -> dict[str, Any]:
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge

    from tenant_kms.openapi import PATH_PARAMETERS, SCHEMAS, SECURITY_SCHEMES
    from tenant_kms.provider_config import PROVIDERS

    merge = OpenAPIMerge(
        title=TITLE,
        version=_project_version(),
        description=DESCRIPTION,
        security_schemes=SECURITY_SCHEMES,
        on_conflict="error",
    )
    for app in resolvers():
        schema = app.get_openapi_schema()
        merge.add_schema(schema.model_dump(mode="json", by_alias=True, exclude_none=True))
    document = json.loads(json.dumps(merge.get_openapi_schema()))  # status codes as JSON has them
    for path, item in document["paths"].items():
        for operation in item.values():
            _tidy(operation)
        names = re.findall(r"\{([^}]+)\}", path)
        if names:
            item["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]} for name in names
            ]
    schemas = document["components"]["schemas"]
    schemas.update(SCHEMAS)
    schemas["Provider"] = {"type": "string", "enum": list(PROVIDERS)}
    used = _references(document["paths"])
    while True:  # what the paths use, and what that uses in turn
        more = used | _references([schemas[name] for name in used])
        if more == used:
            break
        used = more
    for name in POWERTOOLS_ONLY:
        if name not in used:
            schemas.pop(name, None)
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed document differs")
    args = parser.parse_args()
    text = render(build())
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            sys.stderr.write(f"{DOCUMENT.relative_to(ROOT)} is not what the code generates: run make openapi\n")
            return 1
        return 0
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
