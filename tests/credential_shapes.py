"""Static credentials in the shapes people paste them, for the rule-2 tests."""

from __future__ import annotations

import json

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6" + "A" * 80
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
SERVICE_ACCOUNT = {"type": "service_account", "project_id": "p", "private_key_id": "abc", "private_key": PEM}
AZURE_SECRET = "Xy28Q~abcdefghijklmnopqrstuvwxyz0123456"

BYOK = {
    "region": "us-east-1",
    "key_arn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "role_arn": "arn:aws:iam::111122223333:role/tenant-kms",
    "external_id": "acme-7f3c",
}

SHAPES = {
    "access key id as a value": {"config": {"key_arn": AWS_KEY_ID}},
    "temporary access key id": {"config": {"note": "ASIAY34FZKBOKMUTVV7A"}},
    "access key id field": {"config": {"aws_access_key_id": "anything"}},
    "secret key field": {"config": {"aws_secret_access_key": "anything"}},
    "secret key by shape under any name": {"config": {"blob": AWS_SECRET}},
    "session token field": {"config": {"SessionToken": "x"}},
    "session token by shape": {"config": {"x": SESSION_TOKEN}},
    "credentials object": {"config": {**BYOK, "credentials": {"AccessKeyId": "x", "SecretAccessKey": "y"}}},
    "nested in a list": {"config": {"keys": [{"ok": 1}, {"deep": [AWS_KEY_ID]}]}},
    "nested in dicts": {"config": {"a": {"b": {"c": {"secretAccessKey": "z"}}}}},
    "top-level, outside config": {"provider": "global", "config": {}, "extra": {"aws_session_token": "t"}},
    "service account JSON object": {"config": SERVICE_ACCOUNT},
    "service account JSON as a string": {"config": {"key_file": json.dumps(SERVICE_ACCOUNT)}},
    "private_key field": {"config": {"private_key": "abc"}},
    "PEM block": {"config": {"cert": PEM}},
    "certificate field": {"config": {"client_certificate": "MIIB"}},
    "azure client secret field": {"config": {"client_secret": "s"}},
    "azure client secret by shape": {"config": {"value": AZURE_SECRET}},
    "password field": {"config": {"password": "hunter2"}},
    "key named like a secret in camel case": {"config": {"clientSecret": "s"}},
}
