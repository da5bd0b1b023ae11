"""The BYOK kill switch on AWS by the key's own state (disabled, pending deletion), end to end
on moto, and every answer AWS KMS gives to Decrypt as it comes over the wire: parsed by
botocore with the deployment's retry settings, classified by the adapter, acted on by the
service (sealed, or unavailable and never sealed)."""

from __future__ import annotations

from urllib.parse import quote

import boto3
from faults import FaultProxy
from moto.core.authorization import disable_iam_authentication
from support import Clock, Function, emf_metrics, http_sample, invoke_sample, snapshot_tables, step_up
from testenv import TABLES
from world import configure, put_records, read, view


def snapshot() -> dict:
    with disable_iam_authentication():
        return snapshot_tables(TABLES)


def customer_kms():
    return boto3.client("kms", region_name="us-east-1")


def disable(key_id: str) -> None:
    customer_kms().disable_key(KeyId=key_id)


def schedule_deletion(key_id: str) -> None:
    customer_kms().schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)


def restore(key_id: str) -> None:
    kms = customer_kms()
    if kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion":
        kms.cancel_key_deletion(KeyId=key_id)  # leaves the key disabled, as AWS does
    kms.enable_key(KeyId=key_id)


def test_the_customer_disabling_or_deleting_the_key_seals_the_tenant(tenant_id, customer, kms_proxy):
    """Catches the adapter treating a disabled key or a key pending deletion as a transient
    fault (503, never sealed: the kill switch would not bite) or the seal not holding until
    the key is back."""
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    data = Function("tenant_data")
    clock = Clock()
    data.service.clock = clock
    put_records(tenant_id, {"db-password": b"hunter2"}, data)
    assert read(tenant_id, "db-password", data) == (b"hunter2", 1)
    key_id = customer.key_arn.rsplit("/", 1)[1]  # moto takes the key id only

    for pull, code in ((disable, "DisabledException"), (schedule_deletion, "KMSInvalidStateException")):
        # When the customer disables the key (or schedules its deletion) and the TTL runs out
        with disable_iam_authentication():
            pull(key_id)
        clock.advance(301)
        assert read(tenant_id, "db-password", data) == "sealed", code
        sealed = view(tenant_id)
        assert sealed["status"] == "sealed" and code in sealed["sealed_reason"], sealed

        # Then unsealing is refused while the key stays so, and changes nothing
        before = snapshot()
        status, body = Function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))
        assert (status, body["error"]["code"]) == (422, "verification_failed"), body
        assert snapshot() == before

        # And once the key is back, the tenant unseals and its record reads again
        with disable_iam_authentication():
            restore(key_id)
        assert Function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))[0] == 200
        assert read(tenant_id, "db-password", data) == (b"hunter2", 1)


KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE_SESSION = "arn:aws:sts::123456789012:assumed-role/customer-tenant-kms/tenant-kms-acme"


def kms_error(status: int, code: str, message: str | None = None, field: str = "message") -> tuple[int, dict]:
    """An AWS KMS error response body (awsJson1_1) as the service sends it."""
    return status, {"__type": code, **({field: message} if message is not None else {})}


# Each answer AWS KMS gives to Decrypt -> what the tenant sees; "sealed" only for the key
# holder's decisions. Messages as KMS words them.
ANSWERS = {
    "key disabled": (kms_error(400, "DisabledException", f"{KEY} is disabled."), "sealed"),
    "key pending deletion": (kms_error(400, "KMSInvalidStateException", f"{KEY} is pending deletion."), "sealed"),
    "key pending import": (kms_error(400, "KMSInvalidStateException", f"{KEY} is pending import."), "sealed"),
    "key not found": (kms_error(400, "NotFoundException", f"Key '{KEY}' does not exist"), "sealed"),
    "grant pulled": (
        kms_error(
            400,
            "AccessDeniedException",
            f"User: {ROLE_SESSION} is not authorized to perform: kms:Decrypt on resource: {KEY} "
            "because no identity-based policy allows the kms:Decrypt action",
            field="Message",
        ),
        "sealed",
    ),
    "ciphertext not this key's": (kms_error(400, "InvalidCiphertextException"), "sealed"),
    "another key": (
        kms_error(
            400,
            "IncorrectKeyException",
            "The key ID in the request does not identify a KMS key that can perform this operation.",
        ),
        "sealed",
    ),
    "throttled": (kms_error(400, "ThrottlingException", "Rate exceeded"), "provider_unavailable"),
    "key unavailable": (kms_error(500, "KeyUnavailableException", f"{KEY} is unavailable."), "provider_unavailable"),
    "KMS internal error": (kms_error(500, "KMSInternalException"), "provider_unavailable"),
    "KMS dependency timed out": (kms_error(500, "DependencyTimeoutException"), "provider_unavailable"),
    "external key store proxy timed out": (
        kms_error(
            400,
            "KMSInvalidStateException",
            "The external key store proxy did not respond to the request within the timeout allowed. "
            "Retry the request. If you see this error repeatedly, report it to your external key store proxy "
            "administrator.",
        ),
        "provider_unavailable",
    ),
    "our session expired": (
        kms_error(400, "ExpiredTokenException", "The security token included in the request is expired"),
        "provider_unavailable",
    ),
    "our token unknown": (
        kms_error(400, "UnrecognizedClientException", "The security token included in the request is invalid."),
        "provider_unavailable",
    ),
}
# Retried by botocore (standard mode) up to the deployment's KMS_MAX_ATTEMPTS.
RETRIED = {"throttled", "key unavailable", "KMS internal error", "KMS dependency timed out"}


def test_each_kms_answer_over_the_wire_seals_or_is_unavailable(tenant_id, customer, kms_proxy, monkeypatch, capsys):
    """Catches a KMS error code classified the wrong way once botocore has parsed it from
    the wire (a refusal answered 503 and never sealing, or a transient fault or our own
    credentials sealing a tenant), a refusal retried, retries not bounded by KMS_MAX_ATTEMPTS,
    and the metrics of either outcome (TenantsSealed, ProviderUnavailable) not emitted."""
    monkeypatch.setenv("KMS_MAX_ATTEMPTS", "2")
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    unwrap, verify = Function("unwrap"), Function("verify")
    clock = Clock()
    unwrap.service.clock = clock

    capsys.readouterr()
    seen = {}
    for case, (answer, _) in ANSWERS.items():
        clock.advance(301)  # past the TTL: the next unwrap asks KMS
        kms_proxy.reset()
        kms_proxy.fail_always(answer)
        try:
            got = unwrap(invoke_sample("unwrap", tenant_id))
        finally:
            kms_proxy.fail_always(None)
        status = view(tenant_id)
        seen[case] = (got.get("error", {}).get("code"), kms_proxy.calls["Decrypt"], status["status"])
        if status["status"] == "sealed":
            assert answer[1]["__type"] in status["sealed_reason"], status
            assert verify.http(step_up(http_sample("verify_unseal", tenant_id)))[0] == 200

    expected = {
        case: (outcome, 2 if case in RETRIED else 1, "sealed" if outcome == "sealed" else "active")
        for case, (_, outcome) in ANSWERS.items()
    }
    assert seen == expected
    emitted = emf_metrics(capsys.readouterr().out)
    outcomes = [outcome for _, outcome in ANSWERS.values()]
    assert sum(emitted["TenantsSealed"]) == outcomes.count("sealed")
    assert sum(emitted["ProviderUnavailable"]) == outcomes.count("provider_unavailable")


class StsFaultProxy(FaultProxy):
    """STS on the wire (awsQuery, XML errors) in front of moto: a fault answers only the
    AssumeRole calls into one role (the customer's); every other call reaches moto."""

    def __init__(self, target: str, role_arn: str) -> None:
        super().__init__(target)
        self.role = f"RoleArn={quote(role_arn, safe='')}".encode()

    def handle(self, handler, action: str, body: bytes) -> None:
        if b"Action=AssumeRole" not in body or self.role not in body:
            handler._forward(body)
            return
        fault = self._take("AssumeRole")
        if fault is None:
            handler._forward(body)
            return
        status, xml = fault
        data = xml.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/xml")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def sts_error(status: int, kind: str, code: str, message: str) -> tuple[int, str]:
    """An STS error response (awsQuery) as the service sends it."""
    return status, (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
    )


WRAPPING_SESSION = "arn:aws:sts::123456789012:assumed-role/tkms-key-wrapping/acme"
# What STS answers to AssumeRole into the customer's role -> what the tenant sees.
STS_ANSWERS = {
    "customer trust refuses": (
        sts_error(
            403,
            "Sender",
            "AccessDenied",
            f"User: {WRAPPING_SESSION} is not authorized to perform: sts:AssumeRole on resource: "
            "arn:aws:iam::123456789012:role/customer",
        ),
        "sealed",
    ),
    "STS throttles": (sts_error(400, "Sender", "Throttling", "Rate exceeded"), "provider_unavailable"),
    "STS fails": (sts_error(500, "Receiver", "InternalFailure", "An internal error occurred."), "provider_unavailable"),
    "our session expired": (
        sts_error(400, "Sender", "ExpiredToken", "The security token included in the request is expired"),
        "provider_unavailable",
    ),
    "our token unknown": (
        sts_error(403, "Sender", "InvalidClientTokenId", "The security token included in the request is invalid."),
        "provider_unavailable",
    ),
}
STS_RETRIED = {"STS throttles", "STS fails"}


def test_each_sts_answer_to_assuming_the_customer_role_seals_or_is_unavailable(
    tenant_id, customer, moto_server, monkeypatch
):
    """Catches an AssumeRole answer into the customer's role classified the wrong way once
    botocore has parsed STS's XML error: only the customer's trust refusing us may seal;
    throttling, STS failures and our own expired or unknown credentials answer 503, retried
    up to KMS_MAX_ATTEMPTS where botocore retries them."""
    monkeypatch.setenv("KMS_MAX_ATTEMPTS", "2")
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    proxy = StsFaultProxy(moto_server, customer.role_arn)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", proxy.endpoint)
    verify = Function("verify")
    seen = {}
    try:
        for case, (answer, _) in STS_ANSWERS.items():
            proxy.reset()
            proxy.fail_always(answer)
            try:
                got = Function("unwrap")(invoke_sample("unwrap", tenant_id))  # a new instance: no credentials yet
            finally:
                proxy.fail_always(None)
            status = view(tenant_id)
            seen[case] = (got.get("error", {}).get("code"), proxy.calls["AssumeRole"], status["status"])
            if status["status"] == "sealed":
                assert verify.http(step_up(http_sample("verify_unseal", tenant_id)))[0] == 200
    finally:
        proxy.close()

    expected = {
        case: (outcome, 2 if case in STS_RETRIED else 1, "sealed" if outcome == "sealed" else "active")
        for case, (_, outcome) in STS_ANSWERS.items()
    }
    assert seen == expected
