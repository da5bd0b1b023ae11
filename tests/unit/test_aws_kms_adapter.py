"""The AWS adapter's own rules, at the STS/KMS client boundary (botocore's Stubber)."""

from __future__ import annotations

import datetime

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError
from botocore.stub import Stubber

from kms_wrapping import KeyAccessRefused, ProviderConfigInvalid, ProviderUnavailable
from kms_wrapping.aws_kms import _normalise, assumed_role_session, role_session_name

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
