"""The routes that take a body are exactly the ones whose handlers declare one: a new body
route that the pre-routing check does not know would refuse every body it is sent."""

from __future__ import annotations

from support import Function

from tenant_kms.api import ADMIN_ROUTES, BODY_ROUTES

ADMIN_FUNCTIONS = ("configure", "verify", "provision", "rewrap", "erase")


def test_body_routes_are_the_routes_whose_handlers_take_a_body():
    declared = set()
    for name in ADMIN_FUNCTIONS:
        schema = Function(name).module.app.get_openapi_schema()
        for path, operations in schema.paths.items():
            for method, operation in operations.model_dump(exclude_none=True).items():
                if "requestBody" in operation:
                    declared.add(f"{method.upper()} {path}")
    assert declared == set(BODY_ROUTES)
    assert set(BODY_ROUTES) <= {f"{method} {path}" for method, path in ADMIN_ROUTES}
