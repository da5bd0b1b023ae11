"""Cloud KMS BYOK through the production registry, the real SDK client over gRPC with call
credentials, and the Google token services' wire fakes: what seals (the customer's refusal,
wherever it is said), what answers 503 and is retried (outages, our own plumbing, damaged
checksums), per-tenant federation, and the kill switch with data."""

from __future__ import annotations

import datetime
import time

import pytest
from fakes.cloud_kms import DECRYPTION_FAILED
from fakes.google_iam import IAM_CREDENTIALS_HOST, STS_HOST
from gcp_world import GcpCustomer, GcpWorld, tenant_arn
from google.api_core import exceptions as gexc
from google.oauth2.credentials import Credentials as BearerToken
from support import Clock, Function, b64, http_sample, invoke_sample, snapshot_tables, step_up
from support import read_record as read
from testenv import TABLES

from kms_wrapping import KeyAccessRefused, WrapContext, gcp_kms
from tenant_kms.providers import Identities, build_registry
from tenant_kms.settings import Settings

MAX_ATTEMPTS = 3


def tenant_session(tenant_id: str):
    """The tenant's AWS credentials as the production registry gets them."""
    return Identities(Settings.from_env()).aws_credentials(tenant_id)


def configure(tenant_id: str, config: dict) -> tuple[int, dict]:
    body = {"provider": "customer_kms_gcp", "config": config}
    return Function("configure").http(step_up(http_sample("configure_put_global", tenant_id, body=body)))


def view(tenant_id: str) -> dict:
    return Function("configure").http(http_sample("configure_get", tenant_id))[1]


def unseal(tenant_id: str) -> tuple[int, dict]:
    return Function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))


def put(data: Function, tenant_id: str, name: str, value: bytes) -> int:
    return data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))["version"]


@pytest.fixture
def attempts(monkeypatch) -> int:
    monkeypatch.setenv("KMS_MAX_ATTEMPTS", str(MAX_ATTEMPTS))
    return MAX_ATTEMPTS


@pytest.fixture(autouse=True)
def waits(monkeypatch) -> list[float]:
    """The adapter's backoff between attempts, taken on an injected clock instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(gcp_kms, "wait", waited.append)
    return waited


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """One clock for the session cache and for google-auth's token expiry."""
    clock = Clock(time.time())
    monkeypatch.setattr(
        "google.auth._helpers.utcnow",
        lambda: datetime.datetime.fromtimestamp(clock.now, datetime.UTC).replace(tzinfo=None),
    )
    return clock


def onboarded(gcp: GcpWorld, tenant_id: str, *, impersonate: bool = False) -> GcpCustomer:
    customer = gcp.customer(tenant_id, impersonate=impersonate)
    status, answer = configure(tenant_id, customer.config)
    assert status == 200, answer
    return customer


# --------------------------------------------------------------------- the fakes are strict


def test_the_sdk_alone_reports_a_refused_exchange_as_unavailable(gcp, tenant_id):
    """Why the adapter exchanges tokens itself: inside gRPC's plugin the refusal is an outage."""
    customer = gcp.customer(tenant_id)
    customer.provider.state = "DELETED"
    credentials = gcp_kms.federated_credentials(
        workload_identity_provider=customer.provider.audience,
        service_account_email=None,
        aws_region="us-east-1",
        aws_credentials=tenant_session(tenant_id),
    )
    client = gcp_kms.kms_client(credentials)
    with pytest.raises(gexc.ServiceUnavailable, match="Getting metadata from plugin failed") as raised:
        client.decrypt(request={"name": customer.key_name, "ciphertext": b"x"}, retry=None, timeout=5)
    assert "invalid_target" in str(raised.value)


def test_cloud_kms_fake_wants_a_token_it_issued_for_a_principal_bound_on_the_key(gcp, tenant_id):
    customer = gcp.customer(tenant_id)
    other = gcp.customer("someone-else")
    request = {"name": customer.key_name, "plaintext": b"k" * 32}
    made_up = gcp_kms.kms_client(BearerToken(token="ya29.made-up"))
    with pytest.raises(gexc.Unauthenticated):
        made_up.encrypt(request=request, retry=None, timeout=5)

    credentials = gcp_kms.federated_credentials(
        workload_identity_provider=other.provider.audience,
        service_account_email=None,
        aws_region="us-east-1",
        aws_credentials=tenant_session("someone-else"),
    )
    with pytest.raises(gexc.PermissionDenied, match="useToEncrypt"):
        gcp_kms.kms_client(credentials).encrypt(request=request, retry=None, timeout=5)


def test_each_tenant_federates_as_its_own_session_and_the_condition_tells_them_apart(gcp):
    """Two tenants of one customer: Google STS sees two ARNs; narrowing the condition seals one."""
    first, second = "tenant-one", "tenant-two"
    customer = gcp.customer(first)
    condition = f"assertion.arn == '{tenant_arn(first)}' || assertion.arn == '{tenant_arn(second)}'"
    customer.provider.condition = condition
    gcp.kms.keys[customer.key_name].users.add(gcp.iam.principal(customer.provider.audience, tenant_arn(second)))
    data = Function("tenant_data")
    for tenant_id in (first, second):
        assert configure(tenant_id, customer.config)[0] == 200
        assert put(data, tenant_id, "s", tenant_id.encode()) == 1

    seen = {arn for audience, arn in gcp.iam.exchanges if audience == customer.provider.audience}
    assert seen == {tenant_arn(first), tenant_arn(second)}
    assert all(arn.endswith(("/tenant-one", "/tenant-two")) for arn in seen)

    customer.provider.condition = f"assertion.arn == '{tenant_arn(first)}'"
    reader = Function("tenant_data")  # a new instance: nothing cached, new exchanges
    assert read(reader, second, "s") == "sealed"
    assert read(reader, first, "s") == (b"tenant-one", 1)
    assert view(second)["status"] == "sealed" and "unauthorized_client" in view(second)["sealed_reason"]
    assert view(first)["status"] == "active"


def test_the_onboarding_answer_is_what_google_sts_and_cloud_kms_check(gcp, tenant_id):
    """A customer who sets up exactly what onboarding says admits this tenant and no other."""
    status, answer = Function("configure").http(http_sample("configure_onboarding_get", tenant_id))
    assert status == 200, answer
    principal, condition = answer["gcp"]["principal"], answer["gcp"]["attribute_condition"]
    assert principal == tenant_arn(tenant_id)

    customer = gcp.customer(tenant_id)
    customer.provider.condition = condition
    gcp.kms.keys[customer.key_name].users = {gcp.iam.principal(customer.provider.audience, principal)}
    assert configure(tenant_id, customer.config)[0] == 200
    assert (customer.provider.audience, principal) in gcp.iam.exchanges

    other = f"{tenant_id}-other"
    status, answer = configure(other, customer.config)
    assert status == 422 and "attribute condition" in answer["error"]["message"], answer


def test_a_tenant_cannot_use_a_key_another_tenants_customer_trusts(gcp, tenant_id):
    victim = onboarded(gcp, "victim-tenant")
    before = snapshot_tables(TABLES)
    status, answer = configure(tenant_id, victim.config)
    assert status == 422 and answer["error"]["code"] == "verification_failed", answer
    assert "attribute condition" in answer["error"]["message"]
    assert (victim.provider.audience, tenant_arn(tenant_id)) in gcp.iam.callers
    assert {k: v for k, v in snapshot_tables(TABLES).items() if k != TABLES["TenantConfigTable"]} == {
        k: v for k, v in before.items() if k != TABLES["TenantConfigTable"]
    }


def test_a_ciphertext_under_another_binding_is_refused_as_cloud_kms_refuses_it(gcp, tenant_id):
    customer = gcp.customer(tenant_id)
    wrapper = build_registry(Settings.from_env()).wrapper_for("customer_kms_gcp", customer.config, tenant_id)
    wrapped = wrapper.wrap(b"k" * 32, WrapContext(tenant_id, 1))
    with pytest.raises(KeyAccessRefused, match="InvalidArgument") as refused:
        wrapper.unwrap(wrapped, WrapContext(tenant_id, 2))
    assert DECRYPTION_FAILED in str(refused.value)
    assert wrapper.unwrap(wrapped, WrapContext(tenant_id, 1)) == b"k" * 32


# --------------------------------------------------------------------- refusals seal


def _unbind_key(gcp, customer):
    gcp.kms.keys[customer.key_name].users.clear()


def _delete_key(gcp, customer):
    gcp.kms.keys.pop(customer.key_name)


def _disable(gcp, customer):
    gcp.kms.set_state(customer.key_name, 1, "DISABLED")


def _destroy(gcp, customer):
    gcp.kms.set_state(customer.key_name, 1, "DESTROYED")


def _delete_pool(gcp, customer):
    customer.provider.state = "DELETED"


def _narrow_condition(gcp, customer):
    customer.provider.condition = "assertion.arn == 'arn:aws:sts::123456789012:assumed-role/other/x'"


def _unbind_impersonation(gcp, customer):
    customer.service_account.users.clear()


def _delete_service_account(gcp, customer):
    customer.service_account.exists = False


@pytest.mark.parametrize(
    ("revoke", "impersonate", "reason"),
    [
        (_unbind_key, False, "PermissionDenied"),
        (_delete_key, False, "NotFound"),
        (_disable, False, "FailedPrecondition"),
        (_destroy, False, "DESTROYED"),
        (_delete_pool, False, "invalid_target"),
        (_narrow_condition, False, "unauthorized_client"),
        (_unbind_key, True, "PermissionDenied"),
        (_unbind_impersonation, True, "impersonation refused: 403"),
        (_delete_service_account, True, "impersonation refused: 404"),
    ],
)
def test_the_customers_refusal_seals(gcp, tenant_id, revoke, impersonate, reason):
    customer = onboarded(gcp, tenant_id, impersonate=impersonate)
    assert put(Function("tenant_data"), tenant_id, "s", b"v") == 1
    revoke(gcp, customer)

    answer = Function("unwrap")(invoke_sample("unwrap", tenant_id))
    assert answer["error"]["code"] == "sealed" and "key_b64" not in answer
    state = view(tenant_id)
    assert state["status"] == "sealed" and reason in state["sealed_reason"], state


# --------------------------------------------------------------------- faults do not seal


def _kms(kind):
    def inject(gcp, _customer):
        gcp.kms.fail_always(kind)

    return inject


def _token_service(host, status):
    def inject(gcp, _customer):
        gcp.iam.fail_next(MAX_ATTEMPTS + 5, host, status)

    return inject


@pytest.mark.parametrize(
    ("fault", "impersonate", "counted", "message"),
    [
        (_kms("unavailable"), False, "Decrypt", "ServiceUnavailable"),
        (_kms("deadline"), False, "Decrypt", "DeadlineExceeded"),
        (_kms("exhausted"), False, "Decrypt", "ResourceExhausted"),
        (_kms("internal"), False, "Decrypt", "InternalServerError"),
        (_kms("request_crc"), False, "Decrypt", "checksums did not verify"),
        (_kms("plaintext_crc"), False, "Decrypt", "checksums did not verify"),
        (_token_service(STS_HOST, 503), False, STS_HOST, "HTTP 503"),
        (_token_service(STS_HOST, 500), False, STS_HOST, "HTTP 500"),
        (_token_service(STS_HOST, 429), False, STS_HOST, "HTTP 429"),
        (_token_service(IAM_CREDENTIALS_HOST, 503), True, IAM_CREDENTIALS_HOST, "HTTP 503"),
        (_token_service(IAM_CREDENTIALS_HOST, 429), True, IAM_CREDENTIALS_HOST, "HTTP 429"),
    ],
)
def test_outages_and_damage_answer_503_after_the_configured_attempts_and_never_seal(
    gcp, tenant_id, attempts, waits, fault, impersonate, counted, message
):
    onboarded(gcp, tenant_id, impersonate=impersonate)
    assert put(Function("tenant_data"), tenant_id, "s", b"v") == 1
    unwrap = Function("unwrap")

    def count() -> int:
        return len(gcp.kms.calls(counted)) if counted == "Decrypt" else gcp.iam.count(counted)

    before, calls = snapshot_tables(TABLES), count()
    fault(gcp, None)
    try:
        answer = unwrap(invoke_sample("unwrap", tenant_id))
    finally:
        gcp.kms.fail_always(None)
        gcp.iam.clear_faults()
    assert answer["error"]["code"] == "provider_unavailable" and "key_b64" not in answer, answer
    assert message in answer["error"]["message"]
    assert count() - calls == attempts
    assert waits == [gcp_kms.backoff(n) for n in range(1, attempts)]
    assert snapshot_tables(TABLES) == before
    assert view(tenant_id)["status"] == "active"

    decrypts = len(gcp.kms.calls("Decrypt"))
    assert "key_b64" in unwrap(invoke_sample("unwrap", tenant_id))
    assert len(gcp.kms.calls("Decrypt")) == decrypts + 1  # nothing was cached from the failed call


def test_aws_refusing_our_own_signed_request_is_ours_to_fix_and_never_seals(
    gcp, tenant_id, attempts, waits, monkeypatch
):
    onboarded(gcp, tenant_id)
    monkeypatch.delenv("KEY_WRAPPING_ROLE_ARN")  # the function's own credentials, which AWS does not know
    unwrap = Function("unwrap")
    before, exchanges = snapshot_tables(TABLES), gcp.iam.count(STS_HOST)
    answer = unwrap(invoke_sample("unwrap", tenant_id))
    assert answer["error"]["code"] == "provider_unavailable", answer
    assert "InvalidClientTokenId" in answer["error"]["message"]
    assert gcp.iam.count(STS_HOST) - exchanges == attempts
    assert waits == [gcp_kms.backoff(n) for n in range(1, attempts)]
    assert snapshot_tables(TABLES) == before and view(tenant_id)["status"] == "active"


def test_a_damaged_request_is_retried_and_then_succeeds(gcp, tenant_id, attempts, waits):
    onboarded(gcp, tenant_id)
    unwrap = Function("unwrap")
    gcp.kms.fail_next(attempts - 1, "request_crc")
    before = len(gcp.kms.calls("Decrypt"))
    assert "key_b64" in unwrap(invoke_sample("unwrap", tenant_id))
    assert len(gcp.kms.calls("Decrypt")) - before == attempts
    assert waits == [gcp_kms.backoff(n) for n in range(1, attempts)]
    assert view(tenant_id)["status"] == "active"


def test_a_token_cloud_kms_no_longer_accepts_is_exchanged_again_not_sealed(gcp, tenant_id):
    onboarded(gcp, tenant_id)
    unwrap = Function("unwrap")
    assert "key_b64" in unwrap(invoke_sample("unwrap", tenant_id, version=1))
    exchanges = len(gcp.iam.exchanges)
    gcp.iam.tokens.clear()  # Google forgot every token it issued
    assert "key_b64" in Function("unwrap")(invoke_sample("unwrap", tenant_id))
    assert len(gcp.iam.exchanges) == exchanges + 1


def test_a_token_expired_by_googles_clock_is_exchanged_again_on_a_warm_instance(gcp, tenant_id):
    """Catches: Cloud KMS's UNAUTHENTICATED taken as the customer's refusal (the tenant would
    seal), or the held token not dropped on it (the retry would present it again: 503)."""
    onboarded(gcp, tenant_id)
    unwrap = Function("unwrap")
    unwrap.service.clock = Clock(time.time())
    assert "key_b64" in unwrap(invoke_sample("unwrap", tenant_id, version=1))
    unwrap.service.clock.advance(301)  # the session key is gone; the Google token this instance holds is not
    exchanges, decrypts = len(gcp.iam.exchanges), len(gcp.kms.calls("Decrypt"))
    gcp.iam.clock = lambda: time.time() + 3601  # Google's clock is past the token's hour; ours is not

    assert "key_b64" in unwrap(invoke_sample("unwrap", tenant_id, version=1))
    assert len(gcp.kms.calls("Decrypt")) - decrypts == 2  # refused with the old token, then served
    assert len(gcp.iam.exchanges) - exchanges == 1
    assert view(tenant_id)["status"] == "active"


def test_tokens_cloud_kms_keeps_refusing_answer_503_after_the_configured_attempts(gcp, tenant_id, attempts, waits):
    """Every attempt exchanges afresh and Cloud KMS still answers UNAUTHENTICATED: our plumbing.

    Catches: UNAUTHENTICATED sealing the tenant, attempts not bounded by KMS_MAX_ATTEMPTS,
    or a retry that reuses the refused token (one exchange instead of one per attempt)."""
    onboarded(gcp, tenant_id)
    unwrap = Function("unwrap")
    before = snapshot_tables(TABLES)
    exchanges, decrypts = gcp.iam.count(STS_HOST), len(gcp.kms.calls("Decrypt"))
    gcp.kms.fail_always("unauthenticated")
    try:
        answer = unwrap(invoke_sample("unwrap", tenant_id))
    finally:
        gcp.kms.fail_always(None)
    assert answer["error"]["code"] == "provider_unavailable" and "key_b64" not in answer, answer
    assert "Unauthenticated" in answer["error"]["message"]
    assert len(gcp.kms.calls("Decrypt")) - decrypts == attempts
    assert gcp.iam.count(STS_HOST) - exchanges == attempts
    assert waits == [gcp_kms.backoff(n) for n in range(1, attempts)]
    assert snapshot_tables(TABLES) == before and view(tenant_id)["status"] == "active"


# --------------------------------------------------------------------- the kill switch


@pytest.mark.parametrize(
    ("revoke", "impersonate"),
    [
        (_unbind_key, False),
        (_delete_pool, False),
        (_narrow_condition, False),
        (_delete_pool, True),
        (_unbind_impersonation, True),
    ],
)
def test_kill_switch_seals_every_version_within_the_ttl_and_unseals_when_restored(
    gcp, tenant_id, clock, revoke, impersonate
):
    customer = onboarded(gcp, tenant_id, impersonate=impersonate)
    data = Function("tenant_data")
    data.service.clock = clock
    records = {"a": b"first", "b": b"second"}
    for name, value in records.items():
        assert put(data, tenant_id, name, value) == 1
    assert Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[0] == 201
    records["c"] = b"third"
    assert put(data, tenant_id, "c", b"third") == 2
    provider, users = (customer.provider.state, customer.provider.condition), set(gcp.kms.keys[customer.key_name].users)
    impersonators = set(customer.service_account.users) if customer.service_account else set()

    revoke(gcp, customer)
    clock.advance(299)
    assert read(data, tenant_id, "a") == (b"first", 1)  # still inside the session TTL
    assert read(data, tenant_id, "c") == (b"third", 2)
    clock.advance(2)
    assert read(data, tenant_id, "c") == "sealed"
    assert read(data, tenant_id, "a") == "sealed"
    decrypts = len(gcp.kms.calls("Decrypt"))
    assert Function("unwrap")(invoke_sample("unwrap", tenant_id, version=1))["error"]["code"] == "sealed"
    assert len(gcp.kms.calls("Decrypt")) == decrypts  # sealed: Cloud KMS is not asked
    assert view(tenant_id)["status"] == "sealed"

    status, answer = unseal(tenant_id)
    assert (status, answer["error"]["code"]) == (422, "verification_failed"), answer
    assert view(tenant_id)["status"] == "sealed"

    customer.provider.state, customer.provider.condition = provider
    gcp.kms.keys[customer.key_name].users.update(users)
    if customer.service_account:
        customer.service_account.users.update(impersonators)
    status, answer = unseal(tenant_id)
    assert status == 200 and answer["status"] == "active", answer
    assert all(read(data, tenant_id, name) == (value, 1 if name != "c" else 2) for name, value in records.items())
