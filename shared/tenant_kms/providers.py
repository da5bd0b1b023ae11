"""Fills the provider registry for this deployment, once per function instance.

Adapters import their SDKs when first built, so an instance only pays for the providers
its tenants use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kms_wrapping import KeyWrapper, ProviderRegistry
from tenant_kms.settings import Settings, decode_master_key

BYOK_PREFIX = "customer_kms_"


def load_master_key(settings: Settings) -> bytes:
    """The global wrapping key: ``MASTER_KEY_B64`` when set, else the named Secrets Manager secret."""
    if settings.master_key_b64:
        return decode_master_key(settings.master_key_b64, "MASTER_KEY_B64")
    from aws_lambda_powertools.utilities import parameters

    secret = parameters.get_secret(settings.master_key_secret_id, max_age=3600)
    return decode_master_key(str(secret), f"secret MASTER_KEY_SECRET_ID={settings.master_key_secret_id}")


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


def _azure_assertion_source(settings: Settings, tenant_id: str | None) -> Callable[[], str]:
    """The client assertion presented to Entra ID for ``tenant_id`` (None: the operator's own)."""
    from kms_wrapping.azure_kv import web_identity_token_source

    return web_identity_token_source(_sts(settings))


def build_registry(settings: Settings) -> ProviderRegistry:
    registry = ProviderRegistry()

    def global_wrap(_config: dict, _tenant_id: str) -> KeyWrapper:
        from kms_wrapping.global_wrap import GlobalKeyWrapper

        return GlobalKeyWrapper(master_key=load_master_key(settings))

    def operator_kms_aws(_config: dict, _tenant_id: str) -> KeyWrapper:
        from kms_wrapping.aws_kms import operator_wrapper

        return operator_wrapper(key_arn=settings.operator_kms_aws_key_arn, config=_aws_client_config(settings))

    def customer_kms_aws(config: dict, tenant_id: str) -> KeyWrapper:
        from kms_wrapping.aws_kms import customer_wrapper

        return customer_wrapper(
            config, tenant_id, config=_aws_client_config(settings), allowed_accounts=settings.customer_account_ids
        )

    def customer_kms_gcp(config: dict, tenant_id: str) -> KeyWrapper:
        from kms_wrapping import gcp_kms

        return gcp_kms.customer_wrapper(config, tenant_id, aws_region=settings.region)

    def operator_kms_gcp(_config: dict, _tenant_id: str) -> KeyWrapper:
        from kms_wrapping import gcp_kms

        return gcp_kms.operator_wrapper(
            key_name=settings.operator_gcp_key_name,
            workload_identity_provider=settings.operator_gcp_workload_identity_provider,
            service_account_email=settings.operator_gcp_service_account or None,
            aws_region=settings.region,
        )

    def customer_kms_azure(config: dict, tenant_id: str) -> KeyWrapper:
        from kms_wrapping import azure_kv

        return azure_kv.customer_wrapper(
            config,
            tenant_id,
            token_source=_azure_assertion_source(settings, tenant_id),
            options=_azure_options(settings),
            token_max_age=session_ttl(settings, "customer_kms_azure"),
        )

    def operator_kms_azure(_config: dict, _tenant_id: str) -> KeyWrapper:
        from kms_wrapping import azure_kv

        return azure_kv.operator_wrapper(
            key_id=settings.operator_azure_key_id,
            tenant_id=settings.operator_azure_tenant_id,
            client_id=settings.operator_azure_client_id,
            token_source=_azure_assertion_source(settings, None),
            options=_azure_options(settings),
        )

    registry.register("global", global_wrap)
    if settings.operator_kms_aws_key_arn:
        registry.register("operator_kms_aws", operator_kms_aws)
    registry.register("customer_kms_aws", customer_kms_aws, per_tenant=True)
    if settings.operator_gcp_key_name:
        registry.register("operator_kms_gcp", operator_kms_gcp)
    registry.register("customer_kms_gcp", customer_kms_gcp)
    if settings.operator_azure_key_id:
        registry.register("operator_kms_azure", operator_kms_azure)
    # Per tenant: each tenant presents its own assertion and holds its own Entra token.
    registry.register("customer_kms_azure", customer_kms_azure, per_tenant=True)
    return registry


def session_ttl(settings: Settings, provider: str) -> int:
    if provider.startswith(BYOK_PREFIX):
        return settings.byok_session_ttl_seconds
    return settings.session_ttl_seconds
