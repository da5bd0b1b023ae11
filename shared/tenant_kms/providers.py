"""Fills the provider registry for this deployment, once per function instance.

Adapters import their SDKs when first built, so an instance only pays for the providers
its tenants use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kms_wrapping import KeyWrapper, ProviderRegistry
from kms_wrapping.deadline import bounded_by_deadline
from tenant_kms.settings import ConfigurationError, Settings, decode_master_keys

BYOK_PREFIX = "customer_kms_"
# How long an instance keeps its copy of the master key secret. A key id it does not know is
# fetched afresh at once anyway (another instance saw the rotation first).
MASTER_KEY_MAX_AGE_SECONDS = 300
CURRENT_STAGE, PREVIOUS_STAGE = "AWSCURRENT", "AWSPREVIOUS"


class MasterKeySecret:
    """The master key ring from the Secrets Manager secret: ``AWSCURRENT``'s keys first, then
    ``AWSPREVIOUS``'s (absent until the secret's first rotation). Each stage's value is one
    base64 key or several separated by commas, like ``MASTER_KEY_B64``."""

    def __init__(self, secret_id: str, *, max_age: int = MASTER_KEY_MAX_AGE_SECONDS) -> None:
        self._secret_id = secret_id
        self._max_age = max_age
        self._stages: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._no_previous_until = 0.0

    def _value(self, stage: str, force: bool) -> str:
        with self._lock:
            if stage not in self._stages:
                from aws_lambda_powertools.utilities.parameters import SecretsProvider

                # One provider per stage: Powertools caches a secret by name alone, whatever VersionStage asked for.
                self._stages[stage] = SecretsProvider()
                # A read made for a request keeps to its deadline, like every provider call.
                bounded_by_deadline(self._stages[stage].client)
            provider = self._stages[stage]
        value = provider.get(self._secret_id, max_age=self._max_age, force_fetch=force, VersionStage=stage)
        return value.decode() if isinstance(value, bytes) else str(value)

    def _previous(self, force: bool) -> str | None:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        if not force and time.monotonic() < self._no_previous_until:
            return None
        try:
            return self._value(PREVIOUS_STAGE, force)
        except GetParameterError as exc:
            if "ResourceNotFoundException" not in str(exc):
                raise
            # Not rotated yet: remember that as long as a value would be kept.
            self._no_previous_until = time.monotonic() + self._max_age
            return None

    def __call__(self, force: bool = False) -> list[bytes]:
        source = f"secret MASTER_KEY_SECRET_ID={self._secret_id}"
        keys = decode_master_keys(self._value(CURRENT_STAGE, force), f"{source} ({CURRENT_STAGE})")
        previous = self._previous(force)
        if previous is not None:
            keys += decode_master_keys(previous, f"{source} ({PREVIOUS_STAGE})")
        return list(dict.fromkeys(keys))


def load_master_keys(settings: Settings, secret: MasterKeySecret | None = None, *, force: bool = False) -> list[bytes]:
    """The global master key ring, current first: ``MASTER_KEY_B64`` when set, else the secret."""
    if settings.master_key_b64:
        return decode_master_keys(settings.master_key_b64, "MASTER_KEY_B64")
    return (secret or MasterKeySecret(settings.master_key_secret_id))(force)


def master_key_source(settings: Settings) -> Callable[[bool], list[bytes]]:
    """The ring for the global adapter; a secret that cannot be read is an outage, never a refusal."""
    from kms_wrapping import ProviderUnavailable

    if settings.master_key_b64:
        fixed = decode_master_keys(settings.master_key_b64, "MASTER_KEY_B64")
        return lambda _force: fixed
    secret = MasterKeySecret(settings.master_key_secret_id)

    def keys(force: bool) -> list[bytes]:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            return secret(force)
        except ConfigurationError as exc:
            raise ProviderUnavailable(str(exc)) from None
        except GetParameterError as exc:
            raise ProviderUnavailable(f"the master key secret could not be read: {str(exc)[:200]}") from None

    return keys


def _aws_client_config(settings: Settings) -> Any:
    from kms_wrapping.aws_kms import client_config

    return client_config(
        max_attempts=settings.kms_max_attempts,
        connect_timeout=settings.kms_connect_timeout_seconds,
        read_timeout=settings.kms_read_timeout_seconds,
    )


def _sts(settings: Settings) -> Any:
    import boto3

    return boto3.session.Session().client("sts", region_name=settings.region, config=_aws_client_config(settings))


def _azure_options(settings: Settings) -> dict[str, Any]:
    from kms_wrapping.azure_kv import client_options

    return client_options(
        max_attempts=settings.kms_max_attempts,
        connect_timeout=settings.kms_connect_timeout_seconds,
        read_timeout=settings.kms_read_timeout_seconds,
    )


class Identities:
    """Who provider calls run as: per-tenant sessions of the key-wrapping role, and the
    federation signer whose assertions name the tenant towards Entra ID. Built on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._sessions: Any = None
        self._signer: Any = None

    @property
    def sessions(self) -> Any:
        with self._lock:
            if self._sessions is None:
                from kms_wrapping.identity import TenantSessions

                role = self._settings.key_wrapping_role_arn
                self._sessions = TenantSessions(role_arn=role, sts_client=_sts(self._settings) if role else None)
            return self._sessions

    def aws_credentials(self, tenant_id: str) -> Callable[[], Any]:
        """The tenant's current AWS credentials (access key, secret, token), e.g. for GCP's AWS provider."""
        return lambda: self.sessions.credentials(tenant_id)

    @property
    def signer(self) -> Any:
        sessions = self.sessions
        with self._lock:
            if self._signer is None:
                from kms_wrapping.federation import AssertionSigner

                config = _aws_client_config(self._settings)
                region = self._settings.region

                def kms_for(tenant_id: str | None) -> Any:
                    client = sessions.session(tenant_id).client("kms", region_name=region, config=config)
                    return bounded_by_deadline(client)

                self._signer = AssertionSigner(
                    key_id=self._settings.federation_signing_key_id,
                    issuer=self._settings.federation_issuer_url,
                    kms_for=kms_for,
                )
            return self._signer

    def azure_assertion(self, tenant_id: str) -> Callable[[], str]:
        """The client assertion source for this tenant: a JWT naming it, signed by our KMS key."""
        return self.signer.token_source(tenant_id)

    def service_sts(self) -> Any:
        """STS as the key-wrapping role's own session (calls made for no tenant)."""
        return bounded_by_deadline(
            self.sessions.session(None).client(
                "sts", region_name=self._settings.region, config=_aws_client_config(self._settings)
            )
        )


def _azure_assertion_source(identities: Identities, tenant_id: str | None) -> Callable[[], str]:
    """The client assertion presented to Entra ID for ``tenant_id``: a JWT naming the tenant,
    signed by our KMS key. None: the operator's own app, whose federated credential trusts the
    key-wrapping role's STS web identity token."""
    if tenant_id is None:
        from kms_wrapping.azure_kv import web_identity_token_source

        return web_identity_token_source(identities.service_sts())
    return identities.azure_assertion(tenant_id)


def _gcp_options(settings: Settings) -> dict[str, Any]:
    return {
        "aws_region": settings.region,
        "max_attempts": settings.kms_max_attempts,
        "timeout_seconds": settings.kms_read_timeout_seconds,
    }


def build_registry(settings: Settings, identities: Identities | None = None) -> ProviderRegistry:
    registry = ProviderRegistry()
    identities = identities or Identities(settings)

    master_keys = master_key_source(settings)

    def global_wrap(_config: dict, _tenant_id: str) -> KeyWrapper:
        from kms_wrapping.global_wrap import GlobalKeyWrapper

        return GlobalKeyWrapper(master_keys=master_keys)

    def operator_kms_aws(_config: dict, tenant_id: str) -> KeyWrapper:
        from kms_wrapping.aws_kms import operator_wrapper

        return operator_wrapper(
            key_arn=settings.operator_kms_aws_key_arn,
            config=_aws_client_config(settings),
            session=identities.sessions.session(tenant_id),
        )

    def customer_kms_aws(config: dict, tenant_id: str) -> KeyWrapper:
        from kms_wrapping.aws_kms import customer_wrapper
        from tenant_kms.identity import issued_external_id

        return customer_wrapper(
            config,
            tenant_id,
            config=_aws_client_config(settings),
            external_id=lambda: issued_external_id(tenant_id),
            sessions=identities.sessions,
            allowed_accounts=settings.customer_account_ids,
            # A trust the customer withdraws is heeded within the BYOK session TTL.
            max_session_age_seconds=settings.byok_session_ttl_seconds,
        )

    def customer_kms_gcp(config: dict, tenant_id: str) -> KeyWrapper:
        from kms_wrapping import gcp_kms

        return gcp_kms.customer_wrapper(
            config,
            tenant_id,
            aws_credentials=identities.aws_credentials(tenant_id),
            token_max_age=session_ttl(settings, "customer_kms_gcp"),
            **_gcp_options(settings),
        )

    def operator_kms_gcp(_config: dict, tenant_id: str) -> KeyWrapper:
        from kms_wrapping import gcp_kms

        return gcp_kms.operator_wrapper(
            key_name=settings.operator_gcp_key_name,
            workload_identity_provider=settings.operator_gcp_workload_identity_provider,
            service_account_email=settings.operator_gcp_service_account or None,
            aws_credentials=identities.aws_credentials(tenant_id),
            **_gcp_options(settings),
        )

    def customer_kms_azure(config: dict, tenant_id: str) -> KeyWrapper:
        from kms_wrapping import azure_kv

        return azure_kv.customer_wrapper(
            config,
            tenant_id,
            token_source=_azure_assertion_source(identities, tenant_id),
            options=_azure_options(settings),
            token_max_age=session_ttl(settings, "customer_kms_azure"),
        )

    def operator_kms_azure(_config: dict, _tenant_id: str) -> KeyWrapper:
        from kms_wrapping import azure_kv

        return azure_kv.operator_wrapper(
            key_id=settings.operator_azure_key_id,
            tenant_id=settings.operator_azure_tenant_id,
            client_id=settings.operator_azure_client_id,
            token_source=_azure_assertion_source(identities, None),
            options=_azure_options(settings),
        )

    registry.register("global", global_wrap)
    if settings.operator_kms_aws_key_arn:
        registry.register("operator_kms_aws", operator_kms_aws, per_tenant=True)
    registry.register("customer_kms_aws", customer_kms_aws, per_tenant=True)
    if settings.operator_gcp_key_name:
        registry.register("operator_kms_gcp", operator_kms_gcp, per_tenant=True)
    # Per tenant: each tenant federates as its own AWS identity and holds its own Google token.
    registry.register("customer_kms_gcp", customer_kms_gcp, per_tenant=True)
    if settings.operator_azure_key_id:
        registry.register("operator_kms_azure", operator_kms_azure)
    # Per tenant: each tenant presents its own assertion and holds its own Entra token.
    registry.register("customer_kms_azure", customer_kms_azure, per_tenant=True)
    return registry


def session_ttl(settings: Settings, provider: str) -> int:
    if provider.startswith(BYOK_PREFIX):
        return settings.byok_session_ttl_seconds
    return settings.session_ttl_seconds
