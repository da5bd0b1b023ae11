"""What a caller sends can never break a parser, the credential scan or a log line."""

from __future__ import annotations

import json

import pytest
from support import structured_logs

from tenant_kms import untrusted_json
from tenant_kms.credentials import reject_static_credentials
from tenant_kms.errors import InvalidRequest, StaticCredentialsRejected
from tenant_kms.observability import Audit


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 5000 + "]" * 5000, "deeper than 32 levels"),
        ('{"a": ' * 40 + "1" + "}" * 40, "deeper than 32 levels"),
        ("[" + "9" * 4301 + "]", "longer than 4300 digits"),
        ('{"provider": "global", "config": {', "not valid JSON at character 34"),
        ('"\\ud800"', "lone surrogate"),
        ('"' + "\\" * 3 + '"' * 2000, "not valid JSON"),
    ],
)
def test_unsafe_json_is_refused_in_words(text, says):
    with pytest.raises(untrusted_json.UnsafeJson, match=says):
        untrusted_json.parse(text)


def test_brackets_and_digits_inside_strings_do_not_count():
    text = json.dumps({"note": "[" * 100 + "9" * 5000})
    assert untrusted_json.parse(text) == {"note": "[" * 100 + "9" * 5000}


def test_a_config_string_holding_deep_json_is_refused_not_recursed():
    with pytest.raises(InvalidRequest, match=r"config\.note nests arrays or objects deeper than 32"):
        reject_static_credentials({"provider": "global", "config": {"note": "[" * 5000 + "]" * 5000}})


def test_the_scan_walks_any_depth_without_recursion():
    body: dict = {"secret_access_key": "x"}
    for _ in range(20_000):
        body = {"nested": body}
    with pytest.raises(StaticCredentialsRejected, match=r"an AWS secret access key at nested\.nested"):
        reject_static_credentials(body)


def test_json_in_a_string_is_still_scanned():
    with pytest.raises(StaticCredentialsRejected, match=r"a client secret at config\.note\.client_secret"):
        reject_static_credentials({"config": {"note": json.dumps({"client_secret": "s"})}})


@pytest.mark.parametrize("name", ["db-\ud800-password", "\udfff", "caf\u00e9 \U0001f511"])
def test_an_audit_line_always_encodes(name):
    with structured_logs() as logs, Audit().operation("put_record", actor="internal", tenant_id="acme", record=name):
        pass
    (line,) = logs.getvalue().splitlines()
    line.encode("utf-8")  # what Lambda's stdout does with it
    assert json.loads(line)["audit"]["record"] == name


def test_readable_unicode_stays_readable_in_logs():
    with structured_logs() as logs:
        Audit().event("put_record", actor="internal", tenant_id="acme", record="caf\u00e9")
    assert "caf\u00e9" in logs.getvalue()
