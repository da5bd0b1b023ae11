"""Re-wrap of key versions held under a wrapping key that is no longer current.

A version records the resolved id of the key that wrapped it (``key_id``). When the wrapping
key rotates (the global master key, the operator's KMS key parameter, a Cloud KMS primary
version, a Key Vault key's new version, an AWS alias pointed at another key), the version's
TMK is unwrapped with its old form and wrapped again under the current key, bound to the
same tenant and version. The TMK itself never changes, so records and cached keys stay valid.

Each version is re-wrapped under its own provider config (the one it was made under), which
for most versions is the tenant's current one; versions under an older config move to that
config's current key and keep their provider until their records move on and they are
destroyed.

The write replaces only the wrapped key and its id, and only if the version still holds what
was read and is not destroyed: a concurrent provision, destroy or erase wins, and a destroyed
or erased version is never written back.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from kms_wrapping import (
    KeyAccessRefused,
    KeyWrapper,
    ProviderConfigInvalid,
    ProviderNotAvailable,
    WrapContext,
    WrappedKey,
)
from kms_wrapping import ProviderUnavailable as WrapperUnavailable
from tenant_kms.errors import TenantKmsError
from tenant_kms.models import KeyVersion, TenantConfig
from tenant_kms.observability import count, count_for, logger
from tenant_kms.service import ACTIVE, ERASING, RETIRED, SEALED, TenantKms, iso

# Direct invoke of RewrapFunction with {"job": "rewrap_wrapping_keys"}: the operator's trigger.
REWRAP_KEYS_JOB = "rewrap_wrapping_keys"
# Both the current and the held-back (retired) versions matter: a retired one still decrypts.
LIVE = (ACTIVE, RETIRED)
RING_FRESH_SECONDS = 60


def is_key_rewrap(event: dict[str, Any]) -> bool:
    return event.get("job") == REWRAP_KEYS_JOB


class VersionFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class WrappingKeyRotation:
    """One per function instance, beside the service whose registry and audit it uses."""

    def __init__(self, service: TenantKms) -> None:
        self.service = service
        self._refreshed_at = float("-inf")

    def rewrap_tenant(
        self, tenant_id: str, *, actor: str, should_stop: Callable[[], bool] = lambda: False
    ) -> dict[str, int]:
        """Re-wrap the tenant's live versions not on their config's current key; what became of
        them, counted (only the counts that are not zero): ``checked``, ``rewrapped``,
        ``current``, ``skipped``, ``failed``, ``on_old_key`` (and ``on_old_key.<provider>``:
        versions left on an old key, refused, unavailable or of a sealed tenant), ``sealed``
        (the tenant, skipped without a provider call) or ``gone`` (erased or being erased).

        Runs out of time (``should_stop``) by raising TimeoutError: the tenant is visited again
        rather than left half done."""
        self._refresh_master_keys()
        config = self._config(tenant_id)
        if config is None:
            return {"gone": 1}
        rows = list(KeyVersion.query(tenant_id, filter_condition=KeyVersion.status.is_in(*LIVE), consistent_read=True))
        totals: Counter[str] = Counter()
        old_key: Counter[str] = Counter()
        current_ids: dict[tuple[str, str, str], str] = {}
        if config.status == SEALED:
            totals["sealed"] = 1
            old_key.update(row.provider for row in rows)
        else:
            for row in sorted(rows, key=lambda row: row.version):
                if should_stop():
                    raise TimeoutError(f"no time left to re-wrap the versions of tenant {tenant_id}")
                totals["checked"] += 1
                try:
                    outcome = self._rewrap(row, current_ids, actor)
                except (VersionFailed, TenantKmsError) as failure:  # the latter: our storage, after its retries
                    outcome = "old"
                    totals["failed"] += 1
                    count("KeyVersionRewrapFailures")
                    logger.warning(
                        "key version not re-wrapped", tenant_id=tenant_id, version=row.version, code=failure.code
                    )
                if outcome == "old":
                    old_key[row.provider] += 1
                else:
                    totals[outcome] += 1
        count("KeyVersionsRewrapped", totals["rewrapped"])
        count("KeyVersionsOnOldWrappingKey", sum(old_key.values()))
        # Per provider too: a sealed customer's tenant says nothing about the master key.
        for provider in sorted({row.provider for row in rows}):
            count_for("KeyVersionsOnOldWrappingKey", old_key[provider], provider=provider)
        totals["on_old_key"] = sum(old_key.values())
        totals.update({f"on_old_key.{provider}": number for provider, number in old_key.items()})
        return {name: number for name, number in sorted(totals.items()) if number}

    def _refresh_master_keys(self) -> None:
        """What is current is decided on a fresh copy of the master key ring, never a stale one
        (read again at most once a minute: an instance visits many tenants in a row)."""
        now = self.service.clock()
        if now - self._refreshed_at < RING_FRESH_SECONDS:
            return
        self._refreshed_at = now
        try:
            wrapper = self.service.registry.wrapper_for("global", {}, "")
        except ProviderNotAvailable:
            return
        refresh = getattr(wrapper, "refresh", None)
        if refresh is not None:
            try:
                refresh()
            except WrapperUnavailable as exc:
                logger.warning("master key ring not refreshed", reason=str(exc)[:200])

    @staticmethod
    def _config(tenant_id: str) -> TenantConfig | None:
        try:
            config = TenantConfig.get(tenant_id, consistent_read=True)
        except DoesNotExist:
            return None
        return None if config.status == ERASING else config

    def _wrapper(self, row: KeyVersion) -> KeyWrapper:
        try:
            return self.service.registry.wrapper_for(row.provider, row.provider_config, row.tenant_id)
        except (ProviderNotAvailable, ProviderConfigInvalid) as exc:
            raise VersionFailed("provider_unavailable", f"provider {row.provider} cannot be used: {exc}") from None

    def _rewrap(self, row: KeyVersion, current_ids: dict[tuple[str, str, str], str], actor: str) -> str:
        """'current', 'rewrapped', 'skipped' (changed meanwhile, now current or gone) or 'old'."""
        wrapper = self._wrapper(row)
        # A customer's key is asked as the tenant itself; the operator's answers alike for every tenant.
        scope = row.tenant_id if row.provider.startswith("customer_") else ""
        key = (row.provider, json.dumps(row.provider_config, sort_keys=True), scope)
        try:
            if key not in current_ids:
                current_ids[key] = wrapper.current_key_id(row.tenant_id)
            current = current_ids[key]
            if row.key_id == current:
                return "current"
            context = WrapContext(row.tenant_id, row.version)
            tmk = wrapper.unwrap(WrappedKey(row.key_id, row.wrapped_key or b""), context)
            new = wrapper.wrap(tmk, context)
        except KeyAccessRefused as exc:
            # Not sealed from here: the tenant's own next use of the key decides that.
            raise VersionFailed("refused", f"{row.provider}: {exc}") from None
        except WrapperUnavailable as exc:
            raise VersionFailed("provider_unavailable", f"{row.provider}: {exc}") from None
        if not self._replace_wrapped_key(row, new):
            return self._after_race(row, current)
        self.service.audit.event(
            "rewrap_key_version",
            actor=actor,
            tenant_id=row.tenant_id,
            version=row.version,
            provider=row.provider,
            from_key_id=row.key_id,
            to_key_id=new.key_id,
        )
        return "rewrapped"

    def _replace_wrapped_key(self, row: KeyVersion, new: WrappedKey) -> bool:
        """Only the wrapped form and its key id, only on the version as read, never on a destroyed one."""
        try:
            KeyVersion(row.tenant_id, row.version).update(
                actions=[
                    KeyVersion.wrapped_key.set(new.ciphertext),
                    KeyVersion.key_id.set(new.key_id),
                    KeyVersion.rewrapped_at.set(iso(self.service.clock())),
                ],
                condition=(KeyVersion.key_uid == row.key_uid)
                & (KeyVersion.key_id == row.key_id)
                & (KeyVersion.wrapped_key == row.wrapped_key)
                & KeyVersion.status.is_in(*LIVE),
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    @staticmethod
    def _after_race(row: KeyVersion, current: str) -> str:
        try:
            now = KeyVersion.get(row.tenant_id, row.version, consistent_read=True)
        except DoesNotExist:
            return "skipped"
        if now.status not in LIVE or now.key_uid != row.key_uid or now.key_id == current:
            return "skipped"
        return "old"
