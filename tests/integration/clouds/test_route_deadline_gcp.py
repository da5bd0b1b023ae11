"""Cloud KMS calls keep to the request's deadline: each attempt's gRPC deadline is at most
what is left of it, and no backoff outlasts it, whatever the attempts and timeout settings
allow. The real client talks to the Cloud KMS fake over gRPC; a client interceptor makes
every answer take its seconds on an injected clock, expiring an attempt at its gRPC deadline
as the channel would."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from fakes.cloud_kms import HOST, FakeCloudKms
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import KeyManagementServiceGrpcTransport
from support import Clock

from kms_wrapping import ProviderUnavailable, gcp_kms
from kms_wrapping.deadline import Deadline, running_until

TOKEN, PRINCIPAL = "ya29.deadline-test", "principal://iam.googleapis.com/deadline-test"
KEY = "projects/p/locations/global/keyRings/r/cryptoKeys/deadline"
BUDGET = 25


class _Expired(grpc.RpcError, grpc.Call, grpc.Future):
    """What a gRPC channel raises once a call's deadline passed."""

    def code(self):
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self):
        return "Deadline Exceeded"

    def initial_metadata(self):
        return ()

    def trailing_metadata(self):
        return ()

    def result(self, timeout=None):
        raise self

    def exception(self, timeout=None):
        return self

    def traceback(self, timeout=None):
        return None

    def is_active(self):
        return False

    def time_remaining(self):
        return 0

    def cancel(self):
        return False

    def cancelled(self):
        return False

    def running(self):
        return False

    def done(self):
        return True

    def add_callback(self, callback):
        return False

    def add_done_callback(self, fn):
        fn(self)


class SlowCalls(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.calls: list[tuple[str, float, float | None]] = []  # (method, clock at call, gRPC timeout)

    def intercept_unary_unary(self, continuation, details, request):
        self.calls.append((details.method.rsplit("/", 1)[-1], self.clock(), details.timeout))
        answer = continuation(details, request)  # the service received it either way
        if details.timeout is not None and self.seconds > details.timeout:
            self.clock.advance(details.timeout)
            return _Expired()
        self.clock.advance(self.seconds)
        return answer


@pytest.fixture(scope="module")
def cloud_kms(tls):
    kms = FakeCloudKms(lambda token: PRINCIPAL if token == TOKEN else None, *tls)
    kms.create_key(KEY, PRINCIPAL)
    yield kms, Path(tls[0]).read_bytes()
    kms.stop()


def wrapper_over(cloud_kms, slow: SlowCalls, *, attempts: int, timeout: float) -> gcp_kms.GcpKmsWrapper:
    kms, root_certificate = cloud_kms
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=root_certificate), grpc.access_token_call_credentials(TOKEN)
    )
    # Straight to the fake on loopback (no proxy), verified as Google's host name.
    override = [("grpc.ssl_target_name_override", HOST), ("grpc.enable_http_proxy", 0)]
    secure = grpc.secure_channel(f"127.0.0.1:{kms.port}", credentials, options=override)
    channel = grpc.intercept_channel(secure, slow)
    client = kms_v1.KeyManagementServiceClient(transport=KeyManagementServiceGrpcTransport(channel=channel))
    return gcp_kms.GcpKmsWrapper(
        provider="customer_kms_gcp",
        key_name=KEY,
        kms_client=client,
        max_attempts=attempts,
        timeout_seconds=timeout,
        sleep=slow.clock.advance,
    )


@pytest.mark.parametrize(
    ("seconds", "attempts", "timeout"),
    [
        (6, 10, 5),  # every attempt expires; ten would take 50 s
        (100, 1, 60),  # one attempt whose own timeout passes the deadline
        (9, 4, 10),  # Encrypt answers in 9 s, Decrypt in 9 s, the next Encrypt has 7 s
    ],
)
def test_cloud_kms_attempts_never_outlast_the_request(cloud_kms, seconds, attempts, timeout):
    clock = Clock()
    slow = SlowCalls(clock, seconds)
    wrapper = wrapper_over(cloud_kms, slow, attempts=attempts, timeout=timeout)
    deadline = Deadline(at=clock() + BUDGET, clock=clock)
    served = len(cloud_kms[0].calls("Encrypt"))

    with running_until(deadline), pytest.raises(ProviderUnavailable):
        wrapper.probe("acme")
        wrapper.current_key_id("acme")

    assert len(cloud_kms[0].calls("Encrypt")) > served  # the fake answered, slowly
    assert slow.calls
    for method, at, granted in slow.calls:
        assert at < deadline.at and granted is not None and 0 < granted <= min(timeout, deadline.at - at), (
            method,
            at,
            granted,
        )
    assert clock() <= deadline.at


def test_cloud_kms_calls_that_fit_the_budget_are_unchanged(cloud_kms):
    clock = Clock()
    slow = SlowCalls(clock, 1)
    wrapper = wrapper_over(cloud_kms, slow, attempts=4, timeout=5)

    with running_until(Deadline(at=clock() + BUDGET, clock=clock)):
        assert wrapper.probe("acme").startswith(KEY + "/cryptoKeyVersions/")

    assert [(method, granted) for method, _, granted in slow.calls] == [("Encrypt", 5), ("Decrypt", 5)]
