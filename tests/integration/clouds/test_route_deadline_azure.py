"""Key Vault and Entra ID calls keep to the request's deadline: every attempt (the vault's
and the token exchange's) connects and reads for at most what is left of it, and none
starts past it, whatever the attempts and timeouts the settings allow. The production
adapter talks to the wire fakes through azure-core's real transport, wrapped so that every
answer takes its seconds on an injected clock and an attempt whose read timeout is shorter
fails with the transport's own timeout error once that time has passed."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ServiceResponseTimeoutError
from azure.core.pipeline.transport import RequestsTransport
from support import Clock
from testenv import TABLES

from kms_wrapping import ProviderUnavailable, azure_kv
from kms_wrapping.deadline import Deadline, running_until
from tenant_kms import providers
from tenant_kms.settings import Settings

BUDGET = 25


class SlowTransport(RequestsTransport):
    def __init__(self, clock: Clock, seconds: float, *, read: float) -> None:
        super().__init__(connection_timeout=2, read_timeout=read)  # as the SDK builds it from client_options
        self.clock = clock
        self.seconds = seconds
        self.sent: list[tuple[str, float, float, float]] = []  # (url, clock at send, connect, read granted)

    def send(self, request, **kwargs):
        read = kwargs.get("read_timeout", self.connection_config.read_timeout)
        connect = kwargs.get("connection_timeout", self.connection_config.timeout)
        self.sent.append((request.url, self.clock(), connect, read))
        answer = super().send(request, **kwargs)  # the service received it either way
        if self.seconds > read:
            self.clock.advance(read)
            raise ServiceResponseTimeoutError("Read timed out")
        self.clock.advance(self.seconds)
        return answer

    def sleep(self, duration):  # azure-core's waits between attempts (Retry-After, backoff)
        self.clock.advance(duration)


def wrapper_for(azure, tenant_id: str, transport: SlowTransport, *, attempts: int, read: int):
    customer = azure.customer(tenant_id)
    identities = providers.Identities(Settings.from_env())
    options = azure_kv.client_options(max_attempts=attempts, connect_timeout=2, read_timeout=read)
    return azure_kv.customer_wrapper(
        customer.config,
        tenant_id,
        token_source=providers._azure_assertion_source(identities, tenant_id),
        options={**options, "transport": transport},
    )


@pytest.mark.parametrize(
    ("seconds", "attempts", "read"),
    [
        (6, 10, 5),  # every attempt times out; ten would take 50 s
        (100, 1, 60),  # one attempt whose read timeout alone passes the deadline
        (4, 4, 5),  # each call answers, but the probe's calls together take too long
    ],
)
def test_vault_and_entra_attempts_never_outlast_the_request(azure, tenant_id, seconds, attempts, read):
    assert TABLES  # the tables are not touched: the adapter alone
    clock = Clock()
    transport = SlowTransport(clock, seconds, read=read)
    wrapper = wrapper_for(azure, tenant_id, transport, attempts=attempts, read=read)
    deadline = Deadline(at=clock() + BUDGET, clock=clock)

    with running_until(deadline), pytest.raises(ProviderUnavailable):
        wrapper.probe(tenant_id)
        wrapper.current_key_id(tenant_id)

    assert transport.sent
    for url, at, connect, granted in transport.sent:
        left = deadline.at - at
        assert at < deadline.at and 0 < granted <= min(read, left) and 0 < connect <= left, (url, left, granted)
    assert clock() <= deadline.at


def test_vault_calls_that_fit_the_budget_are_unchanged(azure, tenant_id):
    clock = Clock()
    transport = SlowTransport(clock, 0.5, read=5)
    wrapper = wrapper_for(azure, tenant_id, transport, attempts=4, read=5)

    with running_until(Deadline(at=clock() + BUDGET, clock=clock)):
        assert wrapper.probe(tenant_id)

    assert {granted for *_, granted in transport.sent} == {5}


def test_a_throttled_vault_is_not_waited_for_past_the_deadline(azure, tenant_id):
    """Key Vault throttles with 429 and a Retry-After of seconds; azure-core waits that long
    before its next attempt. Catches an attempt left to wait past the request's deadline."""
    clock = Clock()
    transport = SlowTransport(clock, 0.5, read=5)
    wrapper = wrapper_for(azure, tenant_id, transport, attempts=10, read=5)
    deadline = Deadline(at=clock() + BUDGET, clock=clock)
    azure.vault.retry_after_seconds = 10
    azure.vault.fail_always(429)
    throttled = len(azure.vault.requests)

    with running_until(deadline), pytest.raises(ProviderUnavailable):
        wrapper.probe(tenant_id)

    # The token's challenge and exchange, then attempts at 1, 11.5 and 22 s: a fourth would start at 32.5
    assert len(azure.vault.requests) - throttled == 3, transport.sent
    assert all(at < deadline.at for _, at, *_ in transport.sent)
    assert clock() <= deadline.at
