"""Provider name -> adapter factory, filled once at start-up, never per request."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kms_wrapping.base import KeyWrapper

WrapperFactory = Callable[[Mapping[str, Any]], KeyWrapper]


class ProviderNotAvailable(LookupError):
    """The provider is not registered in this deployment."""


class ProviderRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, WrapperFactory] = {}
        self._wrappers: dict[tuple[str, str], KeyWrapper] = {}
        self._lock = threading.Lock()

    def register(self, provider: str, factory: WrapperFactory) -> None:
        with self._lock:
            self._factories[provider] = factory
            for key in [k for k in self._wrappers if k[0] == provider]:
                del self._wrappers[key]

    def available(self) -> frozenset[str]:
        return frozenset(self._factories)

    def wrapper_for(self, provider: str, config: Mapping[str, Any]) -> KeyWrapper:
        """The adapter for one provider config, built once and reused (it holds SDK clients)."""
        factory = self._factories.get(provider)
        if factory is None:
            raise ProviderNotAvailable(provider)
        cache_key = (provider, json.dumps(config, sort_keys=True))
        with self._lock:
            wrapper = self._wrappers.get(cache_key)
            if wrapper is None:
                wrapper = factory(config)
                self._wrappers[cache_key] = wrapper
            return wrapper
