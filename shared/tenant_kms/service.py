"""The tenant master key lifecycle: configure, verify, provision, unwrap, seal, destroy,
erase. The records the keys seal live in records.py, lifting a seal in unsealing.py, rewrap
jobs in jobs.py.

Every multi-item change is one DynamoDB transaction with conditions, so concurrent callers
and crashes leave either the old state or the new one, never a mix.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from kms_wrapping import (
    KeyAccessRefused,
    KeyWrapper,
    ProviderConfigInvalid,
    ProviderNotAvailable,
    ProviderRegistry,
    WrapContext,
    WrappedKey,
)
from kms_wrapping import ProviderUnavailable as WrapperUnavailable
from tenant_kms import usage
from tenant_kms.erasure import ERASING, erase_keys, erasing_message
from tenant_kms.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ProviderUnavailable,
    Sealed,
    VerificationFailed,
)
from tenant_kms.identity import with_issued_external_id
from tenant_kms.keyring import Clock, SessionCache, SessionKey
from tenant_kms.models import (
    ActiveKey,
    ConfigState,
    KeyVersion,
    StoredRecord,
    TenantConfig,
    bind_tables,
    read_config_state,
    read_rows,
    read_state_and_record,
    read_state_with,
)
from tenant_kms.observability import Audit, count, milliseconds
from tenant_kms.providers import build_registry, session_ttl
from tenant_kms.settings import Settings
from tenant_kms.storage import Backoff

ACTIVE, RETIRED, DESTROYED = "active", "retired", "destroyed"
C = TypeVar("C", TenantConfig, ConfigState)  # the config row, as a model or as read for a read
SEALED = "sealed"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TenantKms:
    """One per function instance: holds the provider adapters and the session cache."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: ProviderRegistry | None = None,
        clock: Clock = time.time,
        audit: Audit | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or build_registry(settings)
        self.clock = clock
        self.cache = SessionCache(lambda: self.clock(), budget_bytes=self.settings.session_cache_mb * 1024 * 1024)
        self.audit = audit or Audit()
        self.backoff = backoff or Backoff()
        self.connection = bind_tables(settings, self.backoff)

    # ------------------------------------------------------------------ reads

    def _config(self, tenant_id: str) -> TenantConfig | None:
        try:
            return TenantConfig.get(tenant_id, consistent_read=True)
        except DoesNotExist:
            return None

    def require_config(self, tenant_id: str) -> TenantConfig:
        return _existing(tenant_id, self._config(tenant_id))

    def version_row(self, tenant_id: str, version: int) -> KeyVersion:
        try:
            row = KeyVersion.get(tenant_id, version, consistent_read=True)
        except DoesNotExist:
            row = None
        return _usable(tenant_id, version, row)

    def active_row(self, config: TenantConfig | ConfigState) -> KeyVersion:
        """The active version, as the config row names it when it does (no read: the row was
        read consistently, and only the transaction that writes that name moves the active
        version), else as its own row holds it. A row from the config holds no wrapped key:
        open_key reads the version row on a cache miss."""
        named = config.active_key
        if named is None or named.version != config.active_version:
            return self.version_row(config.tenant_id, config.active_version)
        return KeyVersion(
            config.tenant_id,
            named.version,
            status=ACTIVE,
            provider=named.provider,
            key_uid=named.key_uid,
            usage_rows=named.usage_rows,
            records=0,
            encryptions=0,
        )

    def config_and_version(self, tenant_id: str, version: int | None) -> tuple[ConfigState, KeyVersion]:
        """The unsealed config and a version of it (None: the active one), in one round trip
        when the config row names the active version; else with the version row in the same
        batch read."""
        if version is None:
            config = self.unsealed(_existing(tenant_id, read_config_state(self.connection, tenant_id)))
            return config, self.active_row(config)
        config, (row,) = self.read_with_state(tenant_id, KeyVersion(tenant_id, version))
        return config, _usable(tenant_id, version, row)

    def read_with_state(self, tenant_id: str, *rows: Model) -> tuple[ConfigState, list[Model | None]]:
        """read_with_config for the reads that change nothing: the config row as ConfigState."""
        config, *found = read_state_with(self.connection, tenant_id, *rows)
        return self.unsealed(_existing(tenant_id, config)), found

    def read_record(self, tenant_id: str, name: str) -> tuple[ConfigState, StoredRecord | None]:
        """The unsealed config and the record ``name`` (None: no such record), in one round trip."""
        config, record = read_state_and_record(self.connection, tenant_id, name)
        return self.unsealed(_existing(tenant_id, config)), record

    def read_with_config(self, tenant_id: str, *rows: Model) -> tuple[TenantConfig, list[Model | None]]:
        """The tenant's config, if its keys may be used, and ``rows`` (by their keys) as stored
        now, all in one consistent batch read."""
        config, *found = read_rows(self.connection, TenantConfig(tenant_id), *rows)
        return self.unsealed(_existing(tenant_id, config)), found

    def config_view(self, tenant_id: str) -> dict[str, Any]:
        config = self._config(tenant_id)
        if config is None:
            return {
                "tenant_id": tenant_id,
                "provider": None,
                "config": None,
                "status": "unconfigured",
                "sealed_reason": None,
                "active_version": None,
                "last_verified_at": None,
                "last_verify_error": None,
                "session_ttl_seconds": None,
            }
        return {
            "tenant_id": tenant_id,
            "provider": config.provider,
            "config": config.config,
            "status": config.status,
            "sealed_reason": config.sealed_reason,
            "sealed_at": config.sealed_at,
            "active_version": config.active_version,
            "last_verified_at": config.last_verified_at,
            "last_verify_error": config.last_verify_error,
            "session_ttl_seconds": session_ttl(self.settings, config.provider),
        }

    def list_versions(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = list(KeyVersion.query(tenant_id, consistent_read=True))
        counts = usage.tenant_usage(tenant_id)
        return [_version_view(row, counts.get(row.version)) for row in rows]

    # ------------------------------------------------------------- providers

    def wrapper(self, provider: str, config: Mapping[str, Any], tenant_id: str) -> KeyWrapper:
        try:
            return self.registry.wrapper_for(provider, config, tenant_id)
        except ProviderNotAvailable:
            available = ", ".join(sorted(self.registry.available()))
            raise InvalidRequest(
                f"provider {provider} is not available in this deployment (its operator key is not configured); "
                f"available: {available}"
            ) from None
        except ProviderConfigInvalid as exc:
            raise InvalidRequest(f"config for {provider}: {exc}") from None

    def _record_verify_error(self, existing: TenantConfig | None, message: str) -> None:
        if existing is None:
            return
        # The row may have gone away meanwhile: then there is nothing left to annotate.
        with contextlib.suppress(UpdateError):
            existing.update(
                actions=[TenantConfig.last_verify_error.set(message[:500])],
                condition=TenantConfig.tenant_id.exists(),
            )

    def _probe(self, tenant_id: str, provider: str, wrapper: KeyWrapper, existing: TenantConfig | None) -> None:
        started = time.perf_counter()
        try:
            wrapper.probe(tenant_id)
        except KeyAccessRefused as exc:
            self._record_verify_error(existing, f"{provider}: {exc}")
            raise VerificationFailed(f"probe against {provider} failed: {exc}") from None
        except WrapperUnavailable as exc:
            self._record_verify_error(existing, f"{provider}: {exc}")
            raise ProviderUnavailable(f"{provider} did not answer the probe: {exc}") from None
        finally:
            milliseconds("ProviderLatency", (time.perf_counter() - started) * 1000)

    # ------------------------------------------------------------- lifecycle

    def configure(self, tenant_id: str, provider: str, config: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        """Validate (done by the caller) -> probe -> apply -> provision, as one step."""
        with self.audit.operation("configure", actor=actor, tenant_id=tenant_id, provider=provider) as entry:
            if provider == "customer_kms_aws":
                config = with_issued_external_id(tenant_id, config)
            wrapper = self.wrapper(provider, config, tenant_id)
            existing = self._existing_config(tenant_id)
            self._probe(tenant_id, provider, wrapper, existing)
            if existing is not None and (existing.provider, existing.config) == (provider, dict(config)):
                entry["version"] = self._reconfirm(existing, wrapper)
            else:
                entry["version"] = self.add_version(tenant_id, provider, dict(config), wrapper, existing, verified=True)
        if existing is not None and existing.status == SEALED:
            # The new active version wrapped and unwrapped: that lifts the seal.
            count("TenantsUnsealed")
            self.audit.event("unseal", actor=actor, tenant_id=tenant_id, provider=provider, version=entry["version"])
        return self.config_view(tenant_id)

    def _reconfirm(self, existing: TenantConfig, wrapper: KeyWrapper) -> int:
        """A configure with the current provider and config, whose probe passed: record the
        verification and keep the active version (rotation is provision's job).

        A sealed tenant unseals if its active version unwraps again. If the provider still
        refuses that version while the config itself probes fine (e.g. the key version that
        wrapped it is gone), a new version under the same config is the only way out, as
        with any configure.
        """
        tenant_id = existing.tenant_id
        now = iso(self.clock())
        actions = [TenantConfig.last_verified_at.set(now), TenantConfig.last_verify_error.remove()]
        if existing.status == SEALED:
            try:
                self.unwrap_row(self.version_row(tenant_id, existing.active_version))
            except KeyAccessRefused:
                return self.add_version(tenant_id, existing.provider, existing.config, wrapper, existing, verified=True)
            actions += [
                TenantConfig.status.set(ACTIVE),
                TenantConfig.sealed_reason.remove(),
                TenantConfig.sealed_at.remove(),
            ]
        try:
            existing.update(actions=actions, condition=TenantConfig.revision == existing.revision)
        except UpdateError:
            raise Conflict(f"the config of tenant {tenant_id} changed during verification; retry") from None
        return existing.active_version

    def provision(self, tenant_id: str, *, actor: str) -> dict[str, Any]:
        """A new version under the current config; an unconfigured tenant gets the global default."""
        existing = self._existing_config(tenant_id)
        if existing is None:
            self.configure(tenant_id, "global", {}, actor=actor)
            return {"version": self.require_config(tenant_id).active_version, "status": ACTIVE}
        with self.audit.operation("provision", actor=actor, tenant_id=tenant_id, provider=existing.provider) as entry:
            self.unsealed(existing)
            wrapper = self.wrapper(existing.provider, existing.config, tenant_id)
            entry["version"] = self.add_version(tenant_id, existing.provider, existing.config, wrapper, existing)
        return {"version": entry["version"], "status": ACTIVE}

    def _existing_config(self, tenant_id: str) -> TenantConfig | None:
        existing = self._config(tenant_id)
        if existing is not None and existing.status == ERASING:
            raise Conflict(erasing_message(tenant_id))
        return existing

    def add_version(
        self,
        tenant_id: str,
        provider: str,
        config: dict[str, Any],
        wrapper: KeyWrapper,
        existing: TenantConfig | None,
        *,
        verified: bool = False,
    ) -> int:
        """Create version n+1, make it active and retire n, atomically."""
        previous = existing.active_version if existing else 0
        version = previous + 1
        tmk = secrets.token_bytes(32)
        try:
            wrapped = wrapper.wrap(tmk, WrapContext(tenant_id, version))
        except KeyAccessRefused as exc:
            self._record_verify_error(existing, f"{provider}: {exc}")
            raise VerificationFailed(f"{provider} refused to wrap the new key: {exc}") from None
        except WrapperUnavailable as exc:
            raise ProviderUnavailable(f"{provider} did not answer: {exc}") from None
        now = iso(self.clock())
        key_uid = uuid.uuid4().hex
        active_key = ActiveKey(version=version, key_uid=key_uid, provider=provider, usage_rows=usage.USAGE_ROWS)
        row = KeyVersion(
            tenant_id,
            version,
            status=ACTIVE,
            provider=provider,
            provider_config=config,
            key_id=wrapped.key_id,
            key_uid=key_uid,
            wrapped_key=wrapped.ciphertext,
            records=0,
            usage_rows=usage.USAGE_ROWS,
            created_at=now,
        )
        retiring = self._retiring(tenant_id, previous)
        try:
            with TransactWrite(connection=self.connection) as tx:
                if existing is None:
                    tx.save(
                        TenantConfig(
                            tenant_id,
                            provider=provider,
                            config=config,
                            status=ACTIVE,
                            active_version=version,
                            revision=1,
                            created_at=now,
                            updated_at=now,
                            last_verified_at=now if verified else None,
                            active_key=active_key,
                        ),
                        condition=TenantConfig.tenant_id.does_not_exist(),
                    )
                else:
                    actions = [
                        TenantConfig.provider.set(provider),
                        TenantConfig.config.set(config),
                        TenantConfig.active_version.set(version),
                        TenantConfig.active_key.set(active_key),
                        TenantConfig.revision.add(1),
                        TenantConfig.updated_at.set(now),
                    ]
                    if verified:
                        actions += [
                            TenantConfig.status.set(ACTIVE),
                            TenantConfig.sealed_reason.remove(),
                            TenantConfig.sealed_at.remove(),
                            TenantConfig.last_verified_at.set(now),
                            TenantConfig.last_verify_error.remove(),
                        ]
                    tx.update(existing, actions=actions, condition=TenantConfig.revision == existing.revision)
                tx.save(row, condition=KeyVersion.tenant_id.does_not_exist())
                usage.open_rows(tx, tenant_id, version, key_uid)
                if retiring is not None:
                    # Its usage rows close with it: no write seals under it from here on.
                    tx.update(
                        KeyVersion(tenant_id, previous),
                        actions=[KeyVersion.status.set(RETIRED), KeyVersion.retired_at.set(now)],
                        condition=(KeyVersion.status == ACTIVE) & _same_usage_rows(retiring),
                    )
                    usage.close_rows(tx, retiring, now)
        except TransactWriteError:
            raise Conflict(f"the keys of tenant {tenant_id} changed concurrently; retry") from None
        self.cache.put((tenant_id, version, key_uid), tmk, session_ttl(self.settings, provider))
        count("KeyVersionsProvisioned")
        return version

    def _retiring(self, tenant_id: str, previous: int) -> KeyVersion | None:
        """The version a provision retires (None for a tenant's first), as it is now."""
        if not previous:
            return None
        try:
            return KeyVersion.get(tenant_id, previous, consistent_read=True)
        except DoesNotExist:
            raise Conflict(f"the keys of tenant {tenant_id} changed concurrently; retry") from None

    def verify(self, tenant_id: str, *, actor: str) -> dict[str, Any]:
        """Probe the current config and record the outcome; never changes the keys."""
        config = self.require_config(tenant_id)
        with self.audit.operation("verify", actor=actor, tenant_id=tenant_id, provider=config.provider) as entry:
            wrapper = self.wrapper(config.provider, config.config, tenant_id)
            now = iso(self.clock())
            error = None
            try:
                wrapper.probe(tenant_id)
            except (KeyAccessRefused, WrapperUnavailable) as exc:
                error = f"{config.provider}: {exc}"[:500]
            actions = (
                [TenantConfig.last_verified_at.set(now), TenantConfig.last_verify_error.remove()]
                if error is None
                else [TenantConfig.last_verify_error.set(error)]
            )
            try:
                # Only for the config that was probed: a concurrent change makes this result stale.
                config.update(actions=actions, condition=TenantConfig.revision == config.revision)
            except UpdateError:
                raise Conflict(f"the config of tenant {tenant_id} changed during verification; retry") from None
            entry["outcome"] = "success" if error is None else "verification_failed"
            if error:
                count("VerificationFailures")
        return {"ok": error is None, "last_verified_at": config.last_verified_at, "last_verify_error": error}

    def destroy_version(self, tenant_id: str, version: int, *, actor: str) -> None:
        """Cryptographic erasure of a retired version that no record references: the version
        row's own count and every usage row at zero, checked in the transaction that destroys."""
        with self.audit.operation("destroy_version", actor=actor, tenant_id=tenant_id, version=version) as entry:
            try:
                row = KeyVersion.get(tenant_id, version, consistent_read=True)
            except DoesNotExist:
                raise NotFound(f"tenant {tenant_id} has no key version {version}") from None
            entry["provider"] = row.provider
            try:
                with TransactWrite(connection=self.connection) as tx:
                    tx.update(
                        KeyVersion(tenant_id, version),
                        actions=[
                            KeyVersion.status.set(DESTROYED),
                            KeyVersion.wrapped_key.remove(),
                            KeyVersion.destroyed_at.set(iso(self.clock())),
                        ],
                        condition=(KeyVersion.status == RETIRED) & (KeyVersion.records == 0) & _same_usage_rows(row),
                    )
                    usage.check_unreferenced(tx, row)
            except TransactWriteError:
                try:
                    row = KeyVersion.get(tenant_id, version, consistent_read=True)
                except DoesNotExist:
                    raise NotFound(f"tenant {tenant_id} has no key version {version}") from None
                if row.status == DESTROYED:
                    entry["outcome"] = "already_destroyed"
                    return
                if row.status == ACTIVE:
                    raise Conflict(f"key version {version} is active; provision a new version first") from None
                records = usage.records_of(row, usage.version_usage(row))
                raise Conflict(f"key version {version} still seals {records} records; run rewrap first") from None
            finally:
                self.cache.evict(tenant_id, version)

    def erase_keys(self, tenant_id: str, *, actor: str) -> bool:
        """Cryptographic erasure of the tenant (its data is unreadable once this returns);
        True when its records and config are left for a purge job."""
        with self.audit.operation("erase", actor=actor, tenant_id=tenant_id) as entry:
            self.cache.evict(tenant_id)
            purge = erase_keys(tenant_id)
            self.cache.evict(tenant_id)
            entry["records"] = "purge_job" if purge else "none"
            count("TenantsErased")
        return purge

    # ------------------------------------------------------------------ keys

    def unsealed(self, config: C) -> C:
        """The config, if its keys may be used: a sealed tenant's are not, whatever the version."""
        if config.status == SEALED:
            self.cache.evict(config.tenant_id)
            raise Sealed(f"tenant {config.tenant_id} is sealed: {config.sealed_reason}")
        return config

    def open_key(self, config: TenantConfig | ConfigState, row: KeyVersion) -> SessionKey:
        """The version's TMK, from the session cache or the provider (sealing on refusal).

        A sealed tenant's key is neither served from the cache nor asked of the provider:
        only unseal() may try the provider again.
        """
        self.unsealed(config)
        key = (row.tenant_id, row.version, row.key_uid)
        cached = self.cache.get(key)
        if cached is not None:
            count("SessionCacheHits")
            return cached
        count("SessionCacheMisses")
        if row.wrapped_key is None:  # named by the config row: the wrapped key is on the version's own
            row = self.version_row(row.tenant_id, row.version)
            key = (row.tenant_id, row.version, row.key_uid)
        try:
            tmk = self.unwrap_row(row)
        except KeyAccessRefused as exc:
            sealed = self._seal(config, f"{row.provider} refused to unwrap version {row.version}: {exc}")
            raise Sealed(f"tenant {row.tenant_id} is sealed: {sealed.sealed_reason}") from None
        return self.cache.put(key, tmk, session_ttl(self.settings, row.provider))

    def unwrap_row(self, row: KeyVersion) -> bytes:
        """Ask the version's provider for its TMK. Raises KeyAccessRefused on a refusal."""
        try:
            wrapper = self.registry.wrapper_for(row.provider, row.provider_config, row.tenant_id)
        except (ProviderNotAvailable, ProviderConfigInvalid) as exc:
            raise ProviderUnavailable(f"provider {row.provider} cannot be used in this deployment: {exc}") from None
        started = time.perf_counter()
        try:
            return wrapper.unwrap(
                WrappedKey(row.key_id, row.wrapped_key or b""), WrapContext(row.tenant_id, row.version)
            )
        except WrapperUnavailable as exc:
            count("ProviderUnavailable")
            raise ProviderUnavailable(f"{row.provider} did not answer: {exc}") from None
        finally:
            milliseconds("ProviderLatency", (time.perf_counter() - started) * 1000)

    def _seal(self, read: TenantConfig | ConfigState, reason: str) -> TenantConfig | ConfigState:
        """Seal the tenant (unless sealed meanwhile); the config row as it is then."""
        self.cache.evict(read.tenant_id)
        if read.status == SEALED:
            return read
        now = iso(self.clock())
        config = read if isinstance(read, TenantConfig) else TenantConfig(read.tenant_id)
        try:
            config.update(
                actions=[
                    TenantConfig.status.set(SEALED),
                    TenantConfig.sealed_reason.set(reason[:500]),
                    TenantConfig.sealed_at.set(now),
                ],
                condition=TenantConfig.status == ACTIVE,
            )
        except UpdateError:
            config.refresh(consistent_read=True)  # sealed (or erased) by someone else meanwhile
            return config
        count("TenantsSealed")
        self.audit.event("seal", actor="system", tenant_id=config.tenant_id, provider=config.provider, reason=reason)
        return config

    def unwrap(self, tenant_id: str, version: int | None, *, actor: str) -> dict[str, Any]:
        with self.audit.operation("unwrap", actor=actor, tenant_id=tenant_id, version=version) as entry:
            config, row = self.config_and_version(tenant_id, version)
            entry.update(version=row.version, provider=row.provider)
            session = self.open_key(config, row)
        now = self.clock()
        return {
            "tenant_id": tenant_id,
            "version": row.version,
            "key_b64": b64(session.tmk),
            "expires_at": iso(session.expires_at),
            "ttl_seconds": max(0, int(session.expires_at - now)),
            "provider": row.provider,
        }


def _existing(tenant_id: str, config: C | None) -> C:
    if config is None:
        raise NotFound(f"tenant {tenant_id} has no master key")
    if config.status == ERASING:
        raise Conflict(erasing_message(tenant_id))
    return config


def _usable(tenant_id: str, version: int, row: KeyVersion | None) -> KeyVersion:
    if row is None:
        raise NotFound(f"tenant {tenant_id} has no key version {version}")
    if row.status == DESTROYED:
        raise NotFound(f"key version {version} of tenant {tenant_id} was destroyed")
    return row


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _version_view(row: KeyVersion, counts: usage.Usage | None) -> dict[str, Any]:
    return {
        "version": row.version,
        "status": row.status,
        "provider": row.provider,
        "key_id": row.key_id,
        "created_at": row.created_at,
        "retired_at": row.retired_at,
        "destroyed_at": row.destroyed_at,
        "records": usage.records_of(row, counts),
        "encryptions": usage.encryptions_of(row, counts),
    }


def _same_usage_rows(row: KeyVersion):
    """The version still has the usage rows ``row`` was read with (none: none added since)."""
    if row.usage_rows is None:
        return KeyVersion.usage_rows.does_not_exist()
    return KeyVersion.usage_rows == row.usage_rows
