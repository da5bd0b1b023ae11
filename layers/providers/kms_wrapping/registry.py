"""Provider name -> adapter factory, filled once at start-up, never per request."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kms_wrapping.base import KeyWrapper

# (provider config, tenant id) -> adapter
WrapperFactory = Callable[[Mapping[str, Any], str], KeyWrapper]


class ProviderNotAvailable(LookupError):
    """The provider is not registered in this deployment."""


class ProviderRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, tuple[WrapperFactory, bool]] = {}
        self._wrappers: dict[tuple[str, str, str], KeyWrapper] = {}
        self._lock = threading.Lock()

    def register(self, provider: str, factory: WrapperFactory, *, per_tenant: bool = False) -> None:
        """``per_tenant``: the adapter holds per-tenant state (assumed-role credentials)."""
        with self._lock:
            self._factories[provider] = (factory, per_tenant)
            for key in [k for k in self._wrappers if k[0] == provider]:
                del self._wrappers[key]

    def available(self) -> frozenset[str]:
        return frozenset(self._factories)

    def wrapper_for(self, provider: str, config: Mapping[str, Any], tenant_id: str) -> KeyWrapper:
        """The adapter for one provider config, built once and reused (it holds SDK clients)."""
        registered = self._factories.get(provider)
        if registered is None:
            raise ProviderNotAvailable(provider)
        factory, per_tenant = registered
        cache_key = (provider, json.dumps(config, sort_keys=True), tenant_id if per_tenant else "")
        with self._lock:
            wrapper = self._wrappers.get(cache_key)
            if wrapper is None:
                wrapper = factory(config, tenant_id)
                self._wrappers[cache_key] = wrapper
            return wrapper
