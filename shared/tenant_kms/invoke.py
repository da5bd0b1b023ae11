"""The direct-invoke contract (DESIGN §4): payload schemas and the error envelope.

Schemas are compiled once with fastjsonschema; Powertools' ``validate`` recompiles per
call and copies the offending value into its message, which may be tenant data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastjsonschema

from tenant_kms.errors import InvalidRequest, TenantKmsError
from tenant_kms.observability import logger

TENANT_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
VERSION = {"type": "integer", "minimum": 1, "maximum": 1_000_000_000}

UNWRAP_SCHEMA = {
    "type": "object",
    "properties": {"tenant_id": TENANT_ID, "version": VERSION},
    "required": ["tenant_id"],
    "additionalProperties": False,
}

TENANT_DATA_SCHEMA = {
    "type": "object",
    "properties": {
        "op": {"enum": ["put", "get", "delete"]},
        "tenant_id": TENANT_ID,
        "name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^\x00-\x1f\x7f]+$"},
        "value_b64": {"type": "string", "pattern": r"^[A-Za-z0-9+/]*={0,2}$"},
    },
    "required": ["op", "tenant_id", "name"],
    "additionalProperties": False,
    "if": {"properties": {"op": {"const": "put"}}},
    "then": {"required": ["value_b64"]},
    "else": {"not": {"required": ["value_b64"]}},
}

REWRAP_SCHEMA = {
    "type": "object",
    "properties": {"tenant_id": TENANT_ID},
    "required": ["tenant_id"],
    "additionalProperties": False,
}


def compile_schema(schema: dict[str, Any]) -> Callable[[Any], Any]:
    validate = fastjsonschema.compile(schema)

    def check(payload: Any) -> Any:
        if isinstance(payload, bool) or not isinstance(payload, dict):
            raise InvalidRequest("payload must be a JSON object")
        try:
            return validate(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            where = exc.path[-1] if exc.path and len(exc.path) > 1 else "payload"
            raise InvalidRequest(f"{where} {exc.message.split(' ', 1)[-1]}") from None

    return check


def respond(operation: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one direct-invoke operation; errors come back as ``{"error": {code, message}}``."""
    try:
        return operation()
    except TenantKmsError as error:
        return error.as_body()
    except Exception:
        logger.exception("unhandled error")
        return TenantKmsError("internal error; see the function's logs").as_body()
