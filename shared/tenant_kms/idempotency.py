"""``Idempotency-Key`` on POST /tenants/{tenant_id}/keys: a retry with the same key within
24 h answers the first answer (status and body) and provisions nothing.

Powertools idempotency keeps the records in DynamoDB (the IdempotencyTable). A record is
scoped to (tenant, key), so one tenant's key never answers another's. A failed call leaves
no record (Powertools deletes it when the call raises), so a legitimate retry runs again.
Answers follow the IETF draft "The Idempotency-Key HTTP Header Field": the first call
still running answers 409, the key reused with a different request 422.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from tenant_kms.errors import Conflict, InvalidRequest, TenantKmsError, Unavailable

HEADER = "idempotency-key"
EXPIRES_AFTER_SECONDS = 24 * 3600
_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class IdempotencyKeyReused(TenantKmsError):
    code, status = "idempotency_key_reused", 422


def idempotency_key(headers: Mapping[str, str] | None) -> str | None:
    """The request's Idempotency-Key, or None without one. The draft sends it as a structured
    field string (in double quotes); the bare token is accepted too."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == HEADER), None)
    if value is None:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not _KEY.fullmatch(value):
        raise InvalidRequest(
            "header Idempotency-Key must be 1-128 letters, digits, '-', '_', '.' or ':', optionally in double quotes"
        )
    return value


class RepeatSafe:
    """Runs a call at most once per (tenant, Idempotency-Key) within 24 h."""

    def __init__(self, table_name: str, *, name: str) -> None:
        self.table_name = table_name
        self.name = name
        self.config: Any = None
        self._once: Callable[..., dict[str, Any]] | None = None
        self._context: Any = None

    def _runner(self) -> Callable[..., dict[str, Any]]:
        if self._once is None:
            # Powertools idempotency imports boto3 (~100 ms): only once a request carries the header.
            from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

            self.config = IdempotencyConfig(
                event_key_jmespath="[tenant_id, key]",
                payload_validation_jmespath="request",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=EXPIRES_AFTER_SECONDS,
                hash_function="sha256",
            )
            # A fixed prefix, so every instance of the function shares the records.
            self._once = idempotent_function(
                _run,
                data_keyword_argument="call",
                config=self.config,
                persistence_store=self.store,
                key_prefix=self.name,
            )
        return self._once

    @functools.cached_property
    def store(self) -> Any:
        """The records' DynamoDB table, through a boto3 client built on first use (so
        AWS_ENDPOINT_URL_DYNAMODB points it at DynamoDB Local in local runs)."""
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        return DynamoDBPersistenceLayer(table_name=self.table_name)

    def register_lambda_context(self, context: Any) -> None:
        """So a call whose function timed out stops counting as in progress at the timeout."""
        self._context = context

    def answer(
        self, tenant_id: str, key: str, request: Mapping[str, Any], produce: Callable[[], tuple[int, Any]]
    ) -> tuple[int, str]:
        """``produce()``'s status and JSON body text, or the stored ones of the first call with
        this key (the text as first sent, byte for byte)."""
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyInconsistentStateError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        once = self._runner()
        self.config.register_lambda_context(self._context)
        call = {"tenant_id": tenant_id, "key": key, "request": dict(request)}
        try:
            stored = once(call=call, produce=produce)
        except IdempotencyAlreadyInProgressError:
            raise Conflict("a request with this Idempotency-Key is in progress; retry") from None
        except IdempotencyInconsistentStateError:
            raise Conflict("a request with this Idempotency-Key changed state meanwhile; retry") from None
        except IdempotencyValidationError:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different request") from None
        except IdempotencyPersistenceLayerError:
            raise Unavailable("the Idempotency-Key records could not be reached; retry") from None
        return stored["status"], stored["body"]


def _run(*, call: dict[str, Any], produce: Callable[[], tuple[int, Any]]) -> dict[str, Any]:
    status, body = produce()
    return {"status": status, "body": json.dumps(body)}
