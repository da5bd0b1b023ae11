"""The admin HTTP API (docs/openapi.json) over the standard library's urllib."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from tenant_kms_client.errors import GatewayError, TenantKmsError, error_from
from tenant_kms_client.retry import Retry

# A gateway that timed out may have let the function finish: repeat only what is harmless twice.
_REPEATABLE_METHODS = frozenset({"GET", "PUT", "DELETE"})
_GATEWAY_RETRY_STATUSES = frozenset({502, 503, 504})


def bearer(token: Callable[[], str]) -> Callable[[], dict[str, str]]:
    """Authorization from a token provider, asked on every request (it refreshes as it must)."""
    return lambda: {"Authorization": f"Bearer {token()}"}


def local_claims(claims: Mapping[str, Any]) -> Callable[[], dict[str, str]]:
    """For `make run` only: the claims in the dev-only X-Local-Claims header, ``auth_time``
    the moment of each request unless the claims fix it."""

    def headers() -> dict[str, str]:
        sent = {"auth_time": int(time.time()), **claims}
        return {"X-Local-Claims": json.dumps(sent)}

    return headers


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


class AdminClient:
    """``AdminClient("https://…/", token=lambda: jwt)``; every method answers the parsed JSON
    body (None for 204) or raises the typed error of ``tenant_kms_client.errors``."""

    def __init__(
        self,
        base_url: str,
        *,
        token: Callable[[], str] | None = None,
        auth: Callable[[], Mapping[str, str]] | None = None,
        retry: Retry | None = None,
        timeout: float = 35.0,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError("base_url must be an https:// (or, locally, http://) URL")
        if (token is None) == (auth is None):
            raise ValueError("give either token (a bearer token provider) or auth (a header provider)")
        self.base_url = base_url.rstrip("/")
        self._auth = auth or bearer(token)  # type: ignore[arg-type]
        self.retry = retry or Retry()
        self.timeout = timeout

    # -- routes --------------------------------------------------------------------------
    def configure(self, tenant_id: str, provider: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = {"provider": provider, "config": dict(config or {})}
        return self._call("PUT", f"/tenants/{_segment(tenant_id)}/kms", body)

    def config(self, tenant_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tenants/{_segment(tenant_id)}/kms")

    def onboarding(self, tenant_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tenants/{_segment(tenant_id)}/kms/onboarding")

    def verify(self, tenant_id: str) -> dict[str, Any]:
        return self._call("POST", f"/tenants/{_segment(tenant_id)}/kms/verify")

    def unseal(self, tenant_id: str) -> dict[str, Any]:
        return self._call("POST", f"/tenants/{_segment(tenant_id)}/kms/unseal")

    def provision(self, tenant_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """A new active version. Always sent with an Idempotency-Key (a fresh one unless
        given), so a retry never provisions twice."""
        key = idempotency_key or uuid.uuid4().hex
        return self._call("POST", f"/tenants/{_segment(tenant_id)}/keys", headers={"Idempotency-Key": key})

    def versions(self, tenant_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/tenants/{_segment(tenant_id)}/keys")["versions"]

    def destroy_version(self, tenant_id: str, version: int) -> None:
        self._call("DELETE", f"/tenants/{_segment(tenant_id)}/keys/{int(version)}")

    def start_rewrap(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's rewrap job (202): started, or the one already running."""
        return self._call("POST", f"/tenants/{_segment(tenant_id)}/rewrap")

    def rewrap_job(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tenants/{_segment(tenant_id)}/rewrap/{_segment(job_id)}")

    def erase(self, tenant_id: str) -> None:
        self._call("DELETE", f"/tenants/{_segment(tenant_id)}")

    # -- transport -------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None) -> Any:
        def retryable(error: TenantKmsError) -> bool:
            if isinstance(error, GatewayError):
                idempotent = method in _REPEATABLE_METHODS or "Idempotency-Key" in (headers or {})
                return error.status in _GATEWAY_RETRY_STATUSES and idempotent
            return error.retryable

        return self.retry.run(lambda: self._send(method, path, body, headers or {}), retryable)

    def _send(self, method: str, path: str, body: Any, headers: Mapping[str, str]) -> Any:
        data = None if body is None else json.dumps(body).encode()
        url = self.base_url + path  # http(s) only, checked in __init__
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        for name, value in {**self._auth(), **headers}.items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, answer_headers, raw = response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as failed:
            status, answer_headers, raw = failed.code, dict(failed.headers.items()), failed.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        error = error_from(parsed, status, answer_headers)
        if error is not None:
            raise error
        return parsed
