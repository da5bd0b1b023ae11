"""Per-tenant sessions of the key-wrapping role.

Every provider call made for a tenant runs as its own session of one role, named after the
tenant: ``arn:aws:sts::<account>:assumed-role/<role>/<session>``. That ARN is what a
customer's trust names (the GCP attribute condition, AWS CloudTrail), so one tenant's calls
can never pass for another's. Session credentials are cached per tenant and refreshed
before they expire; any failure to get them is our own plumbing, never the customer's
refusal.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import boto3
import botocore.session
from botocore.credentials import DeferredRefreshableCredentials, ReadOnlyCredentials

from kms_wrapping.base import ProviderConfigInvalid, ProviderUnavailable
from kms_wrapping.deadline import bounded_by_deadline

_ROLE_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?:[\w+=,.@-]+/)*(?P<name>[\w+=,.@-]+)$"
)
# How long a wrapping-role session lives; botocore refreshes it 15 minutes before the end.
SESSION_SECONDS = 3600


# Calls made for no tenant (reading the federation public key); '@' never occurs in a tenant id.
SERVICE_SESSION = "@service"


def refreshable_credentials(assume_role_answer: dict[str, Any]) -> dict[str, str]:
    """An AssumeRole answer in the form botocore's refreshable credentials take."""
    credentials = assume_role_answer["Credentials"]
    return {
        "access_key": credentials["AccessKeyId"],
        "secret_key": credentials["SecretAccessKey"],
        "token": credentials["SessionToken"],
        "expiry_time": credentials["Expiration"].isoformat(),
    }


def wrapping_session_name(tenant_id: str) -> str:
    """One-to-one: tenant ids never contain '=', and STS wants at least two characters."""
    return tenant_id if len(tenant_id) >= 2 else "=" + tenant_id


class TenantSessions:
    """boto3 sessions (and plain credentials) that act as one tenant's wrapping-role session.

    ``role_arn`` empty: local runs, where every tenant uses the function's own credentials.
    """

    def __init__(self, *, role_arn: str, sts_client: Any = None, duration_seconds: int = SESSION_SECONDS) -> None:
        self.role_arn = role_arn
        self._role = _ROLE_ARN.match(role_arn) if role_arn else None
        if role_arn and not self._role:
            raise ProviderConfigInvalid("the key-wrapping role ARN is not an IAM role ARN")
        self._sts = bounded_by_deadline(sts_client) if sts_client is not None else None
        self._duration = duration_seconds
        self._sessions: dict[str, boto3.Session] = {}
        self._lock = threading.Lock()

    def principal_arn(self, tenant_id: str) -> str | None:
        """The ARN the tenant's calls carry (what a customer's trust may pin); None in local runs."""
        if not self._role:
            return None
        role = self._role
        return (
            f"arn:{role['partition']}:sts::{role['account']}:assumed-role/{role['name']}/"
            f"{wrapping_session_name(tenant_id)}"
        )

    def session(self, tenant_id: str | None) -> boto3.Session:
        """The tenant's session; ``None``: the service's own session, for calls made for no tenant."""
        name = SERVICE_SESSION if tenant_id is None else wrapping_session_name(tenant_id)
        with self._lock:
            session = self._sessions.get(name)
            if session is None:
                session = self._sessions[name] = self._new_session(name, tenant_id)
            return session

    def credentials(self, tenant_id: str) -> ReadOnlyCredentials:
        """The tenant's current credentials (refreshed when close to expiry)."""
        credentials = self.session(tenant_id).get_credentials()
        if credentials is None:
            raise ProviderUnavailable("no AWS credentials available to this function")
        return credentials.get_frozen_credentials()

    def _new_session(self, session_name: str, tenant_id: str | None) -> boto3.Session:
        if not self._role:
            return boto3.session.Session()
        tags = [{"Key": "tenant_id", "Value": tenant_id}] if tenant_id is not None else []

        def fetch() -> dict[str, str]:
            try:
                answer = self._sts.assume_role(
                    RoleArn=self.role_arn,
                    RoleSessionName=session_name,
                    DurationSeconds=self._duration,
                    Tags=tags,
                )
            except Exception as exc:
                # Throttled, expired or refused: our role, our credentials, never the customer's say.
                code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
                raise ProviderUnavailable(f"AssumeRole into the key-wrapping role failed: {code}") from None
            return refreshable_credentials(answer)

        core = botocore.session.get_session()
        core._credentials = DeferredRefreshableCredentials(refresh_using=fetch, method="sts-assume-role")
        return boto3.Session(botocore_session=core)
