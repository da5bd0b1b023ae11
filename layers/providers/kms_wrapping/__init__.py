"""Provider adapters that wrap and unwrap tenant master keys.

The package owns one small interface (:class:`KeyWrapper`), the errors every adapter
normalises its SDK's failures into, and a registry from provider name to adapter
factory. Each provider lives in its own module so its SDK is imported only when a
tenant uses it.
"""

from kms_wrapping.base import (
    KeyAccessRefused,
    KeyWrapper,
    ProviderConfigInvalid,
    ProviderUnavailable,
    WrapContext,
    WrappedKey,
    WrapperError,
)
from kms_wrapping.registry import ProviderNotAvailable, ProviderRegistry

__all__ = [
    "KeyAccessRefused",
    "KeyWrapper",
    "ProviderConfigInvalid",
    "ProviderNotAvailable",
    "ProviderRegistry",
    "ProviderUnavailable",
    "WrapContext",
    "WrappedKey",
    "WrapperError",
]
