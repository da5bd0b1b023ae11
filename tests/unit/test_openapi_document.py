"""docs/openapi.json is what the code generates, a valid OpenAPI 3.1 document, and names the
routes template.yaml declares; every error the code can answer is in it under its status.
(tests/integration/test_openapi_answers.py checks the answers themselves against it.)"""

from __future__ import annotations

import json

import openapi_document
from local_gateway import routes_from_template
from openapi_spec_validator import validate

from tenant_kms import errors, idempotency, sealing
from tenant_kms.api import PREFLIGHT_ROUTE, STEP_UP_ROUTES
from tenant_kms.openapi import ERROR_CODES

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def committed() -> dict:
    return json.loads(openapi_document.DOCUMENT.read_text())


def operations(document: dict) -> dict[str, dict]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_regenerating_the_document_gives_the_committed_file():
    generated = openapi_document.render(openapi_document.build())
    assert generated == openapi_document.DOCUMENT.read_text(), "docs/openapi.json is stale: run make openapi"


def test_the_document_is_valid_openapi_3_1():
    document = committed()
    assert document["openapi"].startswith("3.1")
    validate(document)


def operation_routes():
    """The template's routes but the CORS preflight's, which browsers send, not API callers."""
    return [route for route in routes_from_template()[0] if (route.method, route.path) != PREFLIGHT_ROUTE]


def test_its_paths_and_methods_are_the_httpapi_routes_of_the_template():
    declared = {f"{route.method} {route.path}" for route in operation_routes()}
    assert set(operations(committed())) == declared


def test_routes_behind_the_authorizer_need_the_jwt_and_the_public_ones_none():
    documented = operations(committed())
    for route in operation_routes():
        security = documented[f"{route.method} {route.path}"].get("security")
        assert security == ([{"TenantKmsJwt": []}] if route.authorized else None), route
    scheme = committed()["components"]["securitySchemes"]["TenantKmsJwt"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")


def test_step_up_routes_document_the_challenge_header():
    documented = operations(committed())
    for route_key in STEP_UP_ROUTES:
        assert "WWW-Authenticate" in documented[route_key]["responses"]["401"]["headers"]


def test_every_error_the_code_defines_is_documented_under_its_status():
    assert idempotency.IdempotencyKeyReused and sealing.RecordIntegrityError  # defined outside errors.py
    defined = {errors.TenantKmsError}
    stack = [errors.TenantKmsError]
    while stack:
        for sub in stack.pop().__subclasses__():
            defined.add(sub)
            stack.append(sub)
    by_status = {(cls.status, cls.code) for cls in defined if cls.__module__.startswith("tenant_kms")}
    documented = {(status, code) for status, codes in ERROR_CODES.items() for code in codes}
    assert by_status - {(405, "method_not_allowed")} <= documented
    schemas = committed()["components"]["schemas"]
    assert set(schemas["ErrorDetail"]["properties"]["code"]["enum"]) == {code for _, code in documented}


def test_configure_bodies_are_a_union_discriminated_by_provider_with_each_providers_config():
    schemas = committed()["components"]["schemas"]
    body = schemas["ConfigureRequest"]
    assert body["discriminator"]["propertyName"] == "provider"
    mapping = body["discriminator"]["mapping"]
    assert set(mapping) == set(schemas["Provider"]["enum"])
    aws = schemas[mapping["customer_kms_aws"].rsplit("/", 1)[1]]
    assert aws["properties"]["config"] == {"$ref": "#/components/schemas/CustomerAwsConfig"}
    assert schemas["CustomerAwsConfig"]["additionalProperties"] is False
    assert set(schemas["CustomerAwsConfig"]["required"]) == {"region", "key_arn", "role_arn"}
