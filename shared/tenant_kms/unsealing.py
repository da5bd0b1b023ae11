"""Lifting a seal: only when the tenant's active version unwraps again, through the unseal
route or the scheduled re-poll of sealed tenants (tenant_kms.sweeps). (Sealing itself happens where a key is
opened: TenantKms.open_key.)"""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import UpdateError

from kms_wrapping import KeyAccessRefused
from tenant_kms.errors import Conflict, VerificationFailed
from tenant_kms.models import TenantConfig
from tenant_kms.observability import count
from tenant_kms.service import ACTIVE, SEALED, TenantKms


class Unsealing:
    """One per function instance, beside the TenantKms whose keys it tries."""

    def __init__(self, kms: TenantKms) -> None:
        self.kms = kms

    def unseal(self, tenant_id: str, *, actor: str) -> dict[str, Any]:
        """Lift the seal if the ACTIVE version unwraps again; any older version proves nothing.

        Refused: 422 and the tenant stays sealed. Unreachable: 503, still sealed, nothing cached.
        """
        with self.kms.audit.operation("unseal", actor=actor, tenant_id=tenant_id) as entry:
            config = self.kms.require_config(tenant_id)
            if config.status != SEALED:
                raise Conflict(f"tenant {tenant_id} is not sealed")
            row = self.kms.version_row(tenant_id, config.active_version)
            entry.update(version=row.version, provider=row.provider)
            try:
                self.kms.unwrap_row(row)  # the key itself is not kept: the functions that use it unwrap their own
            except KeyAccessRefused as exc:
                raise VerificationFailed(f"{row.provider} still refuses version {row.version}: {exc}") from None
            try:
                # Only the seal that was checked: a configure meanwhile has lifted it already.
                config.update(
                    actions=[
                        TenantConfig.status.set(ACTIVE),
                        TenantConfig.sealed_reason.remove(),
                        TenantConfig.sealed_at.remove(),
                    ],
                    condition=(TenantConfig.status == SEALED) & (TenantConfig.revision == config.revision),
                )
            except UpdateError:
                raise Conflict(f"the config of tenant {tenant_id} changed while unsealing; retry") from None
            count("TenantsUnsealed")
        return self.kms.config_view(tenant_id)

    def repoll(self, tenant_id: str) -> dict[str, Any]:
        """One scheduled attempt to unseal; a refusal is the customer's answer, not a failure."""
        try:
            self.unseal(tenant_id, actor="schedule")
        except VerificationFailed as refused:
            return {"status": SEALED, "reason": refused.message}
        except Conflict:
            pass  # unsealed meanwhile (configure, the route), or erased
        return {"status": self.kms.config_view(tenant_id)["status"]}
