"""The AWS adapter's own rules, at the STS/KMS client boundary (botocore's Stubber)."""

from __future__ import annotations

import datetime

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError
from botocore.stub import Stubber

from kms_wrapping import KeyAccessRefused, ProviderConfigInvalid, ProviderUnavailable
from kms_wrapping.aws_kms import _normalise, assumed_role_session, role_session_name
from kms_wrapping.identity import TenantSessions, wrapping_session_name

ROLE = "arn:aws:iam::111122223333:role/tenant-kms"


def sts_client():
    return boto3.session.Session().client("sts", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")


def credentials(expires_in: datetime.timedelta) -> dict:
    return {
        "Credentials": {
            "AccessKeyId": "ASIAEXAMPLEEXAMPLE12",
            "SecretAccessKey": "x" * 40,
            "SessionToken": "token",
            "Expiration": datetime.datetime.now(datetime.UTC) + expires_in,
        }
    }


def test_a_missing_external_id_is_refused_before_calling_sts():
    sts = sts_client()
    with Stubber(sts) as stub, pytest.raises(ProviderConfigInvalid, match="external_id"):
        assumed_role_session(sts_client=sts, role_arn=ROLE, external_id="", session_name="tenant-kms-acme")
    stub.assert_no_pending_responses()


def test_assume_role_carries_external_id_and_a_session_name_naming_the_tenant():
    sts = sts_client()
    with Stubber(sts) as stub:
        stub.add_response(
            "assume_role",
            credentials(datetime.timedelta(hours=1)),
            {"RoleArn": ROLE, "RoleSessionName": "tenant-kms-acme", "ExternalId": "ext-1", "DurationSeconds": 3600},
        )
        session = assumed_role_session(
            sts_client=sts, role_arn=ROLE, external_id="ext-1", session_name=role_session_name("acme")
        )
        frozen = session.get_credentials().get_frozen_credentials()
        assert frozen.access_key == "ASIAEXAMPLEEXAMPLE12"
        session.get_credentials().get_frozen_credentials()  # reused: no second AssumeRole
        stub.assert_no_pending_responses()


def test_credentials_are_refreshed_before_they_expire():
    sts = sts_client()
    with Stubber(sts) as stub:
        # Inside botocore's mandatory refresh window (10 min): every use refreshes.
        stub.add_response("assume_role", credentials(datetime.timedelta(minutes=5)))
        stub.add_response("assume_role", credentials(datetime.timedelta(hours=1)))
        session = assumed_role_session(sts_client=sts, role_arn=ROLE, external_id="ext-1", session_name="s-acme")
        session.get_credentials().get_frozen_credentials()
        session.get_credentials().get_frozen_credentials()
        stub.assert_no_pending_responses()


def test_sts_refusal_is_a_refusal():
    sts = sts_client()
    with Stubber(sts) as stub:
        stub.add_client_error("assume_role", "AccessDenied", "not authorized", 403)
        session = assumed_role_session(sts_client=sts, role_arn=ROLE, external_id="ext-1", session_name="s-acme")
        with pytest.raises(KeyAccessRefused, match="AssumeRole refused: AccessDenied"):
            session.get_credentials().get_frozen_credentials()


def test_session_names_are_valid_for_sts():
    assert role_session_name("acme") == "tenant-kms-acme"
    assert len(role_session_name("a" * 64)) == 64


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Decrypt"
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("AccessDeniedException", 400), KeyAccessRefused),
        (client_error("DisabledException", 400), KeyAccessRefused),
        (client_error("NotFoundException", 400), KeyAccessRefused),
        (client_error("KMSInvalidStateException", 400), KeyAccessRefused),
        (client_error("IncorrectKeyException", 400), KeyAccessRefused),
        (client_error("InvalidCiphertextException", 400), KeyAccessRefused),
        (client_error("403", 403), KeyAccessRefused),
        (client_error("ThrottlingException", 400), ProviderUnavailable),
        (client_error("KMSInternalException", 500), ProviderUnavailable),
        (client_error("KeyUnavailableException", 500), ProviderUnavailable),
        (client_error("", 503), ProviderUnavailable),
        (ReadTimeoutError(endpoint_url="https://kms"), ProviderUnavailable),
        (ConnectTimeoutError(endpoint_url="https://kms"), ProviderUnavailable),
    ],
)
def test_sdk_errors_map_onto_refused_or_unavailable(error, kind):
    assert isinstance(_normalise(error, "Decrypt"), kind)


KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = "arn:aws:kms:us-east-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def kms_client():
    return boto3.session.Session().client("kms", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("configured", "answered", "accepted"),
    [
        (KEY, KEY, True),
        (KEY, OTHER_KEY, False),
        ("arn:aws:kms:us-east-1:111122223333:alias/tenant-kms", KEY, True),
        ("arn:aws:kms:us-east-1:111122223333:alias/tenant-kms", OTHER_KEY, False),
    ],
)
def test_the_key_kms_answers_with_must_be_the_configured_one(configured, answered, accepted):
    from kms_wrapping import WrapContext
    from kms_wrapping.aws_kms import AwsKmsWrapper

    kms = kms_client()
    wrapper = AwsKmsWrapper(provider="customer_kms_aws", key_arn=configured, kms_client=kms)
    with Stubber(kms) as stub:
        stub.add_response("encrypt", {"KeyId": answered, "CiphertextBlob": b"blob"})
        if accepted:
            assert wrapper.wrap(b"k" * 32, WrapContext("acme", 1)).key_id == answered
        else:
            with pytest.raises(KeyAccessRefused, match="not the configured"):
                wrapper.wrap(b"k" * 32, WrapContext("acme", 1))


def kms_error(code: str, status: int, message: str = "m", operation: str = "Decrypt") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


# (error, what it is): only the customer's decisions about their key or role seal a tenant.
CLASSIFICATION = {
    # The key's own state: the customer's decision
    "key pending deletion": (
        kms_error("KMSInvalidStateException", 400, "arn:aws:kms:us-east-1:111122223333:key/k is pending deletion."),
        KeyAccessRefused,
    ),
    "key pending import": (
        kms_error("KMSInvalidStateException", 400, "arn:aws:kms:us-east-1:111122223333:key/k is pending import."),
        KeyAccessRefused,
    ),
    "key state without a reason": (kms_error("KMSInvalidStateException", 400, ""), KeyAccessRefused),
    "key disabled": (kms_error("DisabledException", 400), KeyAccessRefused),
    "grant pulled": (kms_error("AccessDeniedException", 400), KeyAccessRefused),
    # A custom key store that cannot be reached: its connection, not a decision about the key
    "CloudHSM key store disconnected": (
        kms_error("KMSInvalidStateException", 400, "The custom key store for this KMS key is not connected."),
        ProviderUnavailable,
    ),
    "key Unavailable (disconnected key store)": (
        kms_error("KMSInvalidStateException", 400, "arn:aws:kms:us-east-1:111122223333:key/k is unavailable."),
        ProviderUnavailable,
    ),
    "external key store proxy timed out": (
        kms_error(
            "KMSInvalidStateException", 400, "The external key store proxy did not respond within the timeout period."
        ),
        ProviderUnavailable,
    ),
    "CloudHSM cluster without HSMs": (
        kms_error("KMSInvalidStateException", 400, "The AWS CloudHSM cluster has no active HSMs."),
        ProviderUnavailable,
    ),
    # Our own credentials: ours to fix
    "our session expired": (kms_error("ExpiredTokenException", 400), ProviderUnavailable),
    "our token unknown to KMS": (kms_error("UnrecognizedClientException", 400), ProviderUnavailable),
    "our token unknown to STS": (kms_error("InvalidClientTokenId", 403, operation="AssumeRole"), ProviderUnavailable),
    "our STS session expired": (kms_error("ExpiredToken", 400, operation="AssumeRole"), ProviderUnavailable),
    "our clock is off": (kms_error("SignatureDoesNotMatch", 403, operation="AssumeRole"), ProviderUnavailable),
    "STS throttles us": (kms_error("Throttling", 400, operation="AssumeRole"), ProviderUnavailable),
    "STS fails": (kms_error("InternalFailure", 500, operation="AssumeRole"), ProviderUnavailable),
    # The customer's role trust says no: a refusal
    "customer trust refuses": (kms_error("AccessDenied", 403, operation="AssumeRole"), KeyAccessRefused),
}


@pytest.mark.parametrize("case", list(CLASSIFICATION))
def test_each_error_is_the_customers_refusal_or_our_fault(case):
    error, kind = CLASSIFICATION[case]
    assert type(_normalise(error, "Decrypt")) is kind


def test_the_wrapping_role_session_is_named_after_the_tenant_one_to_one():
    assert wrapping_session_name("acme") == "acme"
    assert wrapping_session_name("a") == "=a"
    # '=' never occurs in a tenant id, so short and long ids never meet
    tenants = ["a", "Z", "0", "aa", "=a"[1:] + "a", "a.b", "x" * 64]
    names = [wrapping_session_name(t) for t in tenants]
    assert len(set(names)) == len(set(tenants)) and all(2 <= len(n) <= 64 for n in names)
    sessions = TenantSessions(role_arn="arn:aws:iam::111122223333:role/path/stack-key-wrapping")
    assert sessions.principal_arn("acme") == "arn:aws:sts::111122223333:assumed-role/stack-key-wrapping/acme"
    assert TenantSessions(role_arn="").principal_arn("acme") is None


def wrapping_sessions(sts) -> TenantSessions:
    return TenantSessions(role_arn="arn:aws:iam::111122223333:role/stack-key-wrapping", sts_client=sts)


def test_each_tenant_gets_its_own_session_cached_until_close_to_expiry():
    sts = sts_client()
    with Stubber(sts) as stub:
        for tenant in ("acme", "globex"):
            stub.add_response(
                "assume_role",
                credentials(datetime.timedelta(hours=1)),
                {
                    "RoleArn": "arn:aws:iam::111122223333:role/stack-key-wrapping",
                    "RoleSessionName": tenant,
                    "DurationSeconds": 3600,
                    "Tags": [{"Key": "tenant_id", "Value": tenant}],
                },
            )
        sessions = wrapping_sessions(sts)
        for _ in range(3):
            sessions.credentials("acme")
            sessions.credentials("globex")
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDenied", 403), ("Throttling", 400), ("ExpiredToken", 400), ("InvalidClientTokenId", 403)],
)
def test_any_failure_to_become_the_tenants_session_is_our_fault(code, status):
    sts = sts_client()
    with Stubber(sts) as stub:
        stub.add_client_error("assume_role", code, "m", status)
        with pytest.raises(ProviderUnavailable, match=f"key-wrapping role failed: {code}"):
            wrapping_sessions(sts).credentials("acme")


def test_the_external_id_is_asked_at_every_assume_role_and_its_absence_is_a_refusal():
    sts = sts_client()
    issued: list[str | None] = [None]
    with Stubber(sts) as stub:
        session = assumed_role_session(
            sts_client=sts, role_arn=ROLE, external_id=lambda: issued[0], session_name="tenant-kms-acme"
        )
        with pytest.raises(KeyAccessRefused, match="onboarding"):
            session.get_credentials().get_frozen_credentials()
        issued[0] = "tkms-issued"
        stub.add_response(
            "assume_role",
            credentials(datetime.timedelta(hours=1)),
            {
                "RoleArn": ROLE,
                "RoleSessionName": "tenant-kms-acme",
                "ExternalId": "tkms-issued",
                "DurationSeconds": 3600,
            },
        )
        session.get_credentials().get_frozen_credentials()
        stub.assert_no_pending_responses()


def test_customer_credentials_older_than_the_byok_ttl_are_replaced_and_a_refusal_then_bites():
    sts = sts_client()
    now = [datetime.datetime.now(datetime.UTC)]
    with Stubber(sts) as stub:
        session = assumed_role_session(
            sts_client=sts,
            role_arn=ROLE,
            external_id="ext-1",
            session_name="tenant-kms-acme",
            max_age_seconds=300,
            time_fetcher=lambda: now[0],
        )
        stub.add_response("assume_role", credentials(datetime.timedelta(hours=1)))
        session.get_credentials().get_frozen_credentials()
        now[0] += datetime.timedelta(seconds=299)
        session.get_credentials().get_frozen_credentials()  # still young: no AssumeRole
        stub.assert_no_pending_responses()

        # The customer withdraws the trust: once the credentials are 300 s old, STS is asked again
        now[0] += datetime.timedelta(seconds=2)
        stub.add_client_error("assume_role", "AccessDenied", "not authorized", 403)
        with pytest.raises(KeyAccessRefused, match="AccessDenied"):
            session.get_credentials().get_frozen_credentials()
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        # A code this adapter has never heard of: the status decides, at its exact bounds.
        (client_error("SomeNewException", 500), ProviderUnavailable),
        (client_error("SomeNewException", 429), ProviderUnavailable),
        (client_error("SomeNewException", 499), KeyAccessRefused),
        (client_error("SomeNewException", 400), KeyAccessRefused),
        (client_error("SomeNewException", 430), KeyAccessRefused),
    ],
)
def test_an_unknown_code_is_classified_by_its_status_at_the_bounds(error, kind):
    """Catches 5xx starting at 501 (a KMS 500 would seal the tenant), 429 not being a fault,
    and every other status turning into a fault (a refusal would then never seal)."""
    assert isinstance(_normalise(error, "Decrypt"), kind)
