"""The direct-invoke contract (README "Direct invoke"): payload schemas and the error envelope.

Schemas are compiled once with fastjsonschema; Powertools' ``validate`` recompiles per
call and copies the offending value into its message, which may be tenant data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema

from kms_wrapping.deadline import Deadline, running_until
from tenant_kms.errors import InvalidRequest, TenantKmsError
from tenant_kms.observability import logger
from tenant_kms.untrusted_json import is_text

TENANT_ID = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    "description": "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
}
VERSION = {
    "type": "integer",
    "minimum": 1,
    "maximum": 1_000_000_000,
    "description": "must be a whole number from 1 to 1000000000, such as 3 (leave it out for the active version)",
}

UNWRAP_SCHEMA = {
    "type": "object",
    "properties": {"tenant_id": TENANT_ID, "version": VERSION},
    "required": ["tenant_id"],
    "additionalProperties": False,
}

TENANT_DATA_SCHEMA = {
    "type": "object",
    "properties": {
        "op": {"enum": ["put", "get", "delete"], "description": "must be one of put, get, delete"},
        "tenant_id": TENANT_ID,
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": r"^[^\x00-\x1f\x7f]+$",
            "description": "must be 1-255 characters of Unicode text without control characters",
        },
        "value_b64": {
            "type": "string",
            "pattern": r"^[A-Za-z0-9+/]*={0,2}$",
            "description": "must be the record's value in standard base64 (with op put only)",
        },
    },
    "required": ["op", "tenant_id", "name"],
    "additionalProperties": False,
    "if": {"properties": {"op": {"const": "put"}}},
    "then": {"required": ["value_b64"]},
    "else": {"not": {"required": ["value_b64"]}, "description": "value_b64 is accepted with op put only"},
}

# A rewrap job's unit of work, invoked directly on RewrapFunction or sent through the job queue.
JOB_UNIT_SCHEMA = {
    "type": "object",
    "properties": {
        "tenant_id": TENANT_ID,
        "job_id": {
            "type": "string",
            "pattern": r"^[0-9a-f]{32}$",
            "description": "must be a job id as the rewrap route answered it (32 hexadecimal digits)",
        },
    },
    "required": ["tenant_id", "job_id"],
    "additionalProperties": False,
}


def _shown(name: Any) -> str:
    """A caller's field name, quoted and bounded, safe in any output."""
    return json.dumps(str(name)[:40])


def _explain(schema: dict[str, Any], payload: dict, exc: fastjsonschema.JsonSchemaValueException) -> str:
    """What was wrong with ``payload`` and what is accepted, without echoing its values."""
    fields = schema["properties"]
    accepted = ", ".join(fields)
    field = exc.path[1] if len(exc.path) > 1 else None
    if field in fields:
        return f"{field} {fields[field]['description']}"
    if exc.rule == "additionalProperties":
        extra = sorted(_shown(name) for name in payload if name not in fields)
        named = f"field {extra[0]} is" if len(extra) == 1 else f"fields {', '.join(extra[:5])} are"
        return f"payload {named} not accepted; accepted fields: {accepted}"
    if exc.rule == "required":
        missing = [name for name in exc.definition["required"] if name not in payload]
        return "; ".join(f"payload needs {name}, which {fields[name]['description']}" for name in missing)
    return str((exc.definition or {}).get("description") or f"payload holds only the fields {accepted}")


def compile_schema(schema: dict[str, Any]) -> Callable[[Any], Any]:
    validate = fastjsonschema.compile(schema)
    fields = schema["properties"]
    whole_numbers = [name for name, field in fields.items() if field.get("type") == "integer"]

    def check(payload: Any) -> Any:
        if isinstance(payload, bool) or not isinstance(payload, dict):
            raise InvalidRequest(f"payload must be a JSON object with the fields {', '.join(fields)}")
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidRequest(_explain(schema, payload, exc)) from None
        for name, value in payload.items():
            # JSON Schema counts 1.0 as an integer; a version has one spelling only.
            if name in whole_numbers and not isinstance(value, int):
                raise InvalidRequest(f"{name} {fields[name]['description']}")
            if isinstance(value, str) and not is_text(value):
                raise InvalidRequest(f"{name} must be Unicode text: it holds a lone surrogate (\\ud800-\\udfff)")
        return payload

    return check


def respond(
    operation: Callable[[], dict[str, Any]], context: Any = None, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """Run one direct-invoke operation within the time Lambda leaves it (``context``); errors
    come back as ``{"error": {code, message}}``."""
    try:
        with running_until(Deadline.of_lambda(context, clock)):
            return operation()
    except TenantKmsError as error:
        return error.as_body()
    except Exception:
        logger.exception("unhandled error")
        return TenantKmsError("internal error; see the function's logs").as_body()
