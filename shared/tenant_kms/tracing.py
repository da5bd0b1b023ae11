"""The Powertools tracer (X-Ray subsegments for handlers and AWS calls), built on an
instance's first invocation rather than at import.

Importing the X-Ray SDK costs ~150 ms (it builds an X-Ray client and patches botocore),
which at import would double an admin function's import time. Built with the first event,
it is in place before that event's AWS calls: its botocore patch applies to clients already
made. The direct-invoke hot path (unwrap, tenant data) does not use it at all and relies on
Lambda's active tracing; see bench/ and the README.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from tenant_kms.observability import SERVICE

Handler = Callable[[dict, Any], Any]


class FirstInvocationTracer:
    def __init__(self, service: str) -> None:
        self.service = service
        self._tracer = None

    @property
    def tracer(self):
        if self._tracer is None:
            from aws_lambda_powertools import Tracer  # loads the X-Ray SDK: see the module docstring

            self._tracer = Tracer(service=self.service)
        return self._tracer

    def capture_lambda_handler(self, *, capture_response: bool = False) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            traced: Handler | None = None

            @functools.wraps(handler)
            def run(event: dict, context: Any) -> Any:
                nonlocal traced
                if traced is None:
                    traced = self.tracer.capture_lambda_handler(handler, capture_response=capture_response)
                return traced(event, context)

            return run

        return decorate


tracer = FirstInvocationTracer(SERVICE)
