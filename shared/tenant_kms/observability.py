"""Logging, metrics and the audit trail, from Powertools (tracing: ``tenant_kms.tracing``).

One instance of each per process. Audit entries name who did what to which tenant key
(actor, tenant, version, provider, outcome); they never carry key material.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from tenant_kms.errors import TenantKmsError
from tenant_kms.untrusted_json import is_text

SERVICE = "tenant-kms"
NAMESPACE = "TenantKMS"


def _log_line(entry: dict[str, Any]) -> str:
    """One JSON log line that always encodes: Unicode stays readable, but a line holding a lone
    surrogate (from a caller's text) is written with ASCII escapes instead of being lost."""
    line = json.dumps(entry, default=str, separators=(",", ":"), ensure_ascii=False)
    if line.isascii() or is_text(line):
        return line
    return json.dumps(entry, default=str, separators=(",", ":"), ensure_ascii=True)


# The first characters a JSON text can start with (after whitespace).
_JSON_STARTS = frozenset('{["-0123456789tfn')


def _message(text: str) -> Any:
    """A message as Powertools reads it (a JSON text decoded, any other text as it is), without
    raising and catching a decode error for every plain-text line such as an audit entry's."""
    if text[:1] in _JSON_STARTS or text[:1].isspace():
        return json.loads(text)
    return text


logger = Logger(service=SERVICE, json_serializer=_log_line, json_deserializer=_message)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_for(name: str, value: float, **dimensions: str) -> None:
    """A count with dimensions of its own (e.g. per provider), emitted at once."""
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=value,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE, **dimensions},
    ):
        pass


def milliseconds(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=value)


class Audit:
    """Writes one structured entry per key operation, whatever its outcome."""

    def __init__(self, log: Logger = logger) -> None:
        self._log = log

    @contextmanager
    def operation(self, action: str, *, actor: str, tenant_id: str, **fields: Any) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = {
            "action": action,
            "actor": actor,
            "tenant_id": tenant_id,
            "version": None,
            "provider": None,
            **fields,
        }
        try:
            yield entry
        except TenantKmsError as exc:
            entry.update(outcome=exc.code, reason=exc.message)
            self._log.warning(f"audit {action} {exc.code}", audit=entry)
            raise
        except Exception as exc:
            entry.update(outcome="error", reason=type(exc).__name__)
            self._log.error(f"audit {action} error", audit=entry)
            raise
        else:
            entry.setdefault("outcome", "success")
            self._log.info(f"audit {action} {entry['outcome']}", audit=entry)

    def event(self, action: str, *, actor: str, tenant_id: str, **fields: Any) -> None:
        self._log.info(f"audit {action}", audit={"action": action, "actor": actor, "tenant_id": tenant_id, **fields})
