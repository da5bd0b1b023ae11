"""Direct invoke of the internal functions (UnwrapFunction, TenantDataFunction) through a
boto3 Lambda client. Their refusals come back as a 200 whose payload is
``{"error": {"code", "message"}}``: raised here as the typed errors."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from tenant_kms_client.errors import FunctionFailed, TenantKmsError, Throttled, error_from
from tenant_kms_client.retry import Retry


@dataclass(frozen=True)
class TenantKey:
    tenant_id: str
    version: int
    key: bytes  # the tenant master key: keep it in memory only, no longer than ttl_seconds
    expires_at: str
    ttl_seconds: int
    provider: str

    def __repr__(self) -> str:  # never the key itself
        return f"TenantKey(tenant_id={self.tenant_id!r}, version={self.version}, ttl_seconds={self.ttl_seconds})"


@dataclass(frozen=True)
class Record:
    name: str
    value: bytes
    version: int

    def __repr__(self) -> str:
        return f"Record(name={self.name!r}, version={self.version}, {len(self.value)} bytes)"


class InvokeClient:
    """``InvokeClient(boto3.client("lambda"), unwrap_function=…, tenant_data_function=…)``:
    the functions' names or ARNs as deployed (the stack's outputs)."""

    def __init__(
        self,
        lambda_client: Any = None,
        *,
        unwrap_function: str = "UnwrapFunction",
        tenant_data_function: str = "TenantDataFunction",
        retry: Retry | None = None,
    ) -> None:
        if lambda_client is None:
            import boto3  # only here: the admin client needs nothing beyond the standard library

            lambda_client = boto3.client("lambda")
        self.lambda_client = lambda_client
        self.unwrap_function = unwrap_function
        self.tenant_data_function = tenant_data_function
        self.retry = retry or Retry()

    def unwrap(self, tenant_id: str, version: int | None = None) -> TenantKey:
        payload: dict[str, Any] = {"tenant_id": tenant_id}
        if version is not None:
            payload["version"] = version
        answer = self._invoke(self.unwrap_function, payload)
        return TenantKey(
            tenant_id=answer["tenant_id"],
            version=answer["version"],
            key=base64.b64decode(answer["key_b64"]),
            expires_at=answer["expires_at"],
            ttl_seconds=answer["ttl_seconds"],
            provider=answer["provider"],
        )

    def put(self, tenant_id: str, name: str, value: bytes) -> int:
        """Seal ``value`` under the tenant's active version; the version it was sealed under."""
        payload = {"op": "put", "tenant_id": tenant_id, "name": name, "value_b64": base64.b64encode(value).decode()}
        return self._invoke(self.tenant_data_function, payload)["version"]

    def get(self, tenant_id: str, name: str) -> Record:
        answer = self._invoke(self.tenant_data_function, {"op": "get", "tenant_id": tenant_id, "name": name})
        return Record(answer["name"], base64.b64decode(answer["value_b64"]), answer["version"])

    def delete(self, tenant_id: str, name: str) -> None:
        self._invoke(self.tenant_data_function, {"op": "delete", "tenant_id": tenant_id, "name": name})

    def _invoke(self, function: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.retry.run(lambda: self._invoke_once(function, payload), lambda error: error.retryable)

    def _invoke_once(self, function: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.lambda_client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        except Exception as exc:
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code == "TooManyRequestsException":
                raise Throttled(str(exc)) from exc
            raise
        raw = response["Payload"].read()
        answer = json.loads(raw) if raw else None
        if response.get("FunctionError"):
            message = answer.get("errorMessage") if isinstance(answer, dict) else None
            raise FunctionFailed(str(message or "the function failed"), body=answer)
        error = error_from(answer)
        if error is not None:
            raise error
        if not isinstance(answer, dict):
            raise TenantKmsError(f"{function} answered {type(answer).__name__}, not an object", body=answer)
        return answer
