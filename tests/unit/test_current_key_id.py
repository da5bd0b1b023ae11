"""What each adapter says is its current key id, which decides whether a version is re-wrapped:
a key ARN and the global ring need no call; an alias is asked, since it may point elsewhere."""

from __future__ import annotations

import secrets

import boto3
from botocore.stub import ANY, Stubber

from kms_wrapping.aws_kms import AwsKmsWrapper
from kms_wrapping.global_wrap import GlobalKeyWrapper, master_key_id

KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER = "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"
ALIAS = "arn:aws:kms:us-east-1:111122223333:alias/tenant-kms"


def kms_client():
    return boto3.session.Session().client("kms", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")


def test_a_key_arn_is_its_own_current_key_id_without_a_call():
    kms = kms_client()
    with Stubber(kms) as stub:
        assert AwsKmsWrapper(provider="operator_kms_aws", key_arn=KEY, kms_client=kms).current_key_id("acme") == KEY
        stub.assert_no_pending_responses()


def test_an_alias_is_asked_which_key_it_names_now():
    kms = kms_client()
    with Stubber(kms) as stub:
        stub.add_response(
            "encrypt",
            {"KeyId": OTHER, "CiphertextBlob": b"blob"},
            {"KeyId": ALIAS, "Plaintext": ANY, "EncryptionContext": ANY},
        )
        wrapper = AwsKmsWrapper(provider="customer_kms_aws", key_arn=ALIAS, kms_client=kms)
        assert wrapper.current_key_id("acme") == OTHER
        stub.assert_no_pending_responses()


def test_the_global_ring_names_its_first_key():
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    assert GlobalKeyWrapper(master_keys=lambda _force: [k2, k1]).current_key_id("acme") == master_key_id(k2)
