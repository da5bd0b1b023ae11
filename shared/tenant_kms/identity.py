"""Who a tenant is towards its customer's keys, and what the customer must trust.

The AWS external id is issued by the service (random, one per tenant, never chosen by the
caller), so a tenant admin who copies another tenant's config cannot get the other
customer's role to trust it. The GCP and Azure identities name the tenant itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError

from tenant_kms.errors import InvalidRequest
from tenant_kms.models import IssuedExternalId
from tenant_kms.settings import Settings

AZURE_AUDIENCE = "api://AzureADTokenExchange"


def azure_subject(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


def issued_external_id(tenant_id: str) -> str | None:
    try:
        return IssuedExternalId.get(IssuedExternalId.partition_of(tenant_id), 0, consistent_read=True).external_id
    except DoesNotExist:
        return None


def issue_external_id(tenant_id: str, now: str) -> str:
    """The tenant's external id, created on first need; racing first requests agree on one."""
    existing = issued_external_id(tenant_id)
    if existing:
        return existing
    item = IssuedExternalId(
        IssuedExternalId.partition_of(tenant_id), 0, external_id=f"tkms-{secrets.token_hex(20)}", issued_at=now
    )
    try:
        item.save(condition=IssuedExternalId.partition.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return issued_external_id(tenant_id) or ""  # the first writer's
    return item.external_id


def forget_external_id(tenant_id: str) -> bool:
    """Erasure: the next tenant of that name gets a new id. True if there was one."""
    if issued_external_id(tenant_id) is None:
        return False
    IssuedExternalId(IssuedExternalId.partition_of(tenant_id), 0).delete()
    return True


def with_issued_external_id(tenant_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A customer_kms_aws config carrying the tenant's issued external id, if one was issued.

    A caller may repeat the issued id; any other value is refused, so a config copied from
    another tenant never reaches the customer's role. Configure never issues one: the
    customer cannot trust an id before onboarding has shown it, so the probe would fail.
    """
    issued = issued_external_id(tenant_id)
    given = config.get("external_id")
    if given is not None and not (issued and secrets.compare_digest(str(given), issued)):
        raise InvalidRequest(
            "config for customer_kms_aws: external_id is issued by the service; "
            f"use the one GET /tenants/{tenant_id}/kms/onboarding answers, or leave it out"
        )
    return {**config, "external_id": issued} if issued else dict(config)


def onboarding(settings: Settings, tenant_id: str, now: str) -> dict[str, Any]:
    """What a customer must trust so that this tenant, and no other, can use their key."""
    from kms_wrapping.identity import TenantSessions  # boto3: not on the unwrap path's cold start

    principal = TenantSessions(role_arn=settings.key_wrapping_role_arn).principal_arn(tenant_id)
    issuer = settings.federation_issuer_url or None
    external_id = issue_external_id(tenant_id, now)
    return {
        "tenant_id": tenant_id,
        "aws": {"principal_arn": settings.key_wrapping_role_arn or None, "external_id": external_id},
        "gcp": {
            "principal": principal,
            "attribute_condition": f"assertion.arn == '{principal}'" if principal else None,
        },
        "azure": {"issuer": issuer, "subject": azure_subject(tenant_id), "audience": AZURE_AUDIENCE},
    }
