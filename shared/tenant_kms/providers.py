"""Fills the provider registry for this deployment, once per function instance."""

from __future__ import annotations

from kms_wrapping import ProviderRegistry
from tenant_kms.settings import Settings, decode_master_key

BYOK_PREFIX = "customer_kms_"


def load_master_key(settings: Settings) -> bytes:
    """The global wrapping key: ``MASTER_KEY_B64`` when set, else the named Secrets Manager secret."""
    if settings.master_key_b64:
        return decode_master_key(settings.master_key_b64, "MASTER_KEY_B64")
    from aws_lambda_powertools.utilities import parameters

    secret = parameters.get_secret(settings.master_key_secret_id, max_age=3600)
    return decode_master_key(str(secret), f"secret MASTER_KEY_SECRET_ID={settings.master_key_secret_id}")


def build_registry(settings: Settings) -> ProviderRegistry:
    from kms_wrapping.global_wrap import GlobalKeyWrapper

    registry = ProviderRegistry()
    registry.register("global", lambda _config: GlobalKeyWrapper(master_key=load_master_key(settings)))
    return registry


def session_ttl(settings: Settings, provider: str) -> int:
    if provider.startswith(BYOK_PREFIX):
        return settings.byok_session_ttl_seconds
    return settings.session_ttl_seconds
