"""Azure Key Vault, operator and BYOK, through the production registry and the real SDK
pipeline against the Key Vault and Entra ID wire fakes."""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import urlsplit

import boto3
import pytest
from azure.core.exceptions import ServiceResponseTimeoutError
from azure.core.pipeline.transport import RequestsTransport
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from fakes.aws_sts import FUNCTION_ROLE
from support import Clock, Function, b64, http_sample, invoke_sample, snapshot_tables, step_up
from support import read_record as read
from testenv import TABLES

from kms_wrapping import WrapContext, azure_kv
from kms_wrapping.azure_kv import RSA_SIGNED, RSA_UNSIGNED, binding_digest
from tenant_kms import providers
from tenant_kms.settings import Settings

OAEP_256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def configure(tenant_id: str, provider: str, config: dict) -> tuple[int, dict]:
    body = {"provider": provider, "config": config}
    return Function("configure").http(step_up(http_sample("configure_put_global", tenant_id, body=body)))


def provision(tenant_id: str) -> int:
    return Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[0]


def view(tenant_id: str) -> dict:
    return Function("configure").http(http_sample("configure_get", tenant_id))[1]


def versions(tenant_id: str) -> list[dict]:
    return Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]


def key_row(tenant_id: str, version: int) -> dict:
    return boto3.client("dynamodb").get_item(
        TableName=TABLES["KeyVersionTable"],
        Key={"tenant_id": {"S": tenant_id}, "version": {"N": str(version)}},
        ConsistentRead=True,
    )["Item"]


def put_key_row(item: dict) -> None:
    boto3.client("dynamodb").put_item(TableName=TABLES["KeyVersionTable"], Item=item)


def test_customer_key_wraps_signs_and_unwraps_in_the_vault_with_the_crypto_user_role(azure, tenant_id):
    customer = azure.customer(tenant_id)
    status, answer = configure(tenant_id, "customer_kms_azure", customer.config)
    assert status == 200, answer
    assert answer["session_ttl_seconds"] == 300 and answer["last_verified_at"]
    assert provision(tenant_id) == 201
    data = Function("tenant_data")
    assert data(invoke_sample("tenant_data_put", tenant_id, name="s", value_b64=b64(b"secret")))["version"] == 2
    assert read(Function("tenant_data"), tenant_id, "s") == (b"secret", 2)
    assert read_unwrap(tenant_id, 1)["version"] == 1

    # The role can read the key, yet every wrap and unwrap happened in the vault.
    kid = f"https://{customer.key.host}/keys/{customer.key.name}/{customer.key.current}"
    assert [v["key_id"] for v in versions(tenant_id)] == [kid, kid]
    app = customer.client_id
    for version in (1, 2):
        binding = binding_digest(WrapContext(tenant_id, version))
        seen = [r for r in azure.vault.requests if r.get("binding") == binding]
        assert {r["path"].rsplit("/", 1)[1] for r in seen} == {"unwrapkey", "wrapkey"}
        assert all(r["body"]["alg"] == "RSA-OAEP-256" and r["app"] == app for r in seen)
    assert len(azure.vault.calls("sign", app)) == 3  # probe, version 1, version 2
    assert azure.vault.calls("get", app)  # the key's type and public key come from the vault
    # Every token this tenant used was exchanged for an assertion naming this tenant.
    assert set(azure.entra.subjects(app)) == {f"tenant:{tenant_id}"}


def test_operator_key_round_trip(azure, tenant_id):
    status, answer = configure(tenant_id, "operator_kms_azure", {})
    assert status == 200, answer
    assert answer["session_ttl_seconds"] == 3600
    unwrapped = Function("unwrap")(invoke_sample("unwrap", tenant_id))
    assert unwrapped["version"] == 1 and unwrapped["provider"] == "operator_kms_azure"
    # Entra saw only the key-wrapping role's own STS web identity tokens, as deployed.
    assert set(azure.entra.subjects(azure.operator.client_id)) == {FUNCTION_ROLE}
    assert azure.sts.tokens_issued >= 1


def test_sts_throttling_the_operators_web_identity_token_answers_503_after_the_configured_attempts(
    azure, tenant_id, monkeypatch
):
    """The operator's assertion is ours to make: STS throttling GetWebIdentityToken is our
    plumbing's fault. Catches: it sealing the tenant, or the STS client not built with the
    deployment's retry settings (KMS_MAX_ATTEMPTS)."""
    assert configure(tenant_id, "operator_kms_azure", {})[0] == 200
    monkeypatch.setenv("KMS_MAX_ATTEMPTS", "2")
    unwrap = Function("unwrap")  # a new instance: no session key, no Entra token
    before, asked, entra_requests = snapshot_tables(TABLES), azure.sts.token_requests, azure.entra.requests
    azure.sts.fail_with = (400, "Throttling", "Rate exceeded")

    answer = unwrap(invoke_sample("unwrap", tenant_id))

    assert answer["error"]["code"] == "provider_unavailable" and "key_b64" not in answer, answer
    assert azure.sts.token_requests - asked == 2
    assert azure.entra.requests == entra_requests  # no assertion, so nothing to present
    assert snapshot_tables(TABLES) == before and view(tenant_id)["status"] == "active"
    azure.sts.fail_with = None
    assert unwrap(invoke_sample("unwrap", tenant_id))["version"] == 1  # the same instance recovers


@pytest.mark.parametrize(
    ("kind", "managed_hsm", "algorithm"),
    [("oct-HSM", True, "A256KW"), ("RSA-HSM", True, "RSA-OAEP-256"), ("RSA-HSM", False, "RSA-OAEP-256")],
)
def test_algorithm_follows_the_key_type_the_vault_reports(azure, tenant_id, kind, managed_hsm, algorithm):
    """Nothing names the algorithm: the deployed adapter infers it from the ``kty`` a key GET
    answers (a Managed HSM oct-HSM key: A256KW). Catches: a fixed or wrong kty-to-algorithm
    mapping (configure fails: no usable key or the vault refuses the wrap), or an RSA wrap left unsigned."""
    customer = azure.customer(tenant_id, kind=kind, managed_hsm=managed_hsm)
    assert configure(tenant_id, "customer_kms_azure", customer.config)[0] == 200
    assert read_unwrap(tenant_id)["version"] == 1
    app = customer.client_id
    assert {r["body"]["alg"] for r in azure.vault.calls("wrapkey", app) + azure.vault.calls("unwrapkey", app)} == {
        algorithm
    }
    # Only RSA wraps need the vault's signature: AES key wrap cannot be made without the key.
    assert bool(azure.vault.calls("sign", app)) == (algorithm == "RSA-OAEP-256")


def read_unwrap(tenant_id: str, version: int | None = None) -> dict:
    event = (
        invoke_sample("unwrap", tenant_id)
        if version is None
        else invoke_sample("unwrap_version", tenant_id, version=version)
    )
    return Function("unwrap")(event)


def changed_items(before: dict, after: dict) -> list[tuple[str, str]]:
    """(table, tenant) of every item added, removed or changed between two snapshots."""
    changed = []
    for table in before:
        old = {json.dumps(i, sort_keys=True, default=bytes.hex) for i in before[table]}
        new = {json.dumps(i, sort_keys=True, default=bytes.hex) for i in after[table]}
        changed += [(table, json.loads(i)["tenant_id"]["S"]) for i in old ^ new]
    return sorted(set(changed))


@pytest.mark.parametrize("form", ["unsigned", "random_signature", "signature_of_the_genuine_wrap"])
def test_a_wrapped_key_planted_in_the_table_is_refused_and_seals_nothing_else(azure, tenant_id, form):
    victim, bystander = tenant_id, f"{tenant_id}-b"
    customer = azure.customer(victim)  # the bystander trusts the same key through the same app
    azure.trust(customer, bystander)
    for tenant in (victim, bystander):
        assert configure(tenant, "customer_kms_azure", customer.config)[0] == 200
        put = Function("tenant_data")(invoke_sample("tenant_data_put", tenant, name="s", value_b64=b64(b"mine")))
        assert put["version"] == 1

    # Someone who can write the key-version table wraps a key of their choosing for the
    # victim's version 1: RSA-OAEP needs only the vault's public key, the binding is public.
    row = key_row(victim, 1)
    kid, genuine = row["key_id"]["S"], row["wrapped_key"]["B"]
    chosen = os.urandom(32)
    planted = azure.vault.public_key(kid).encrypt(binding_digest(WrapContext(victim, 1)) + chosen, OAEP_256)
    (length,) = struct.unpack(">H", genuine[1:3])
    signature = {
        "unsigned": None,
        "random_signature": os.urandom(256),
        "signature_of_the_genuine_wrap": genuine[3 + length :],
    }[form]
    forged = RSA_UNSIGNED + planted if signature is None else RSA_SIGNED + struct.pack(">H", 256) + planted + signature
    put_key_row({**row, "wrapped_key": {"B": forged}})
    unwraps = len(azure.vault.calls("unwrapkey"))
    before = snapshot_tables(TABLES)

    answer = read_unwrap(victim, 1)
    assert answer["error"]["code"] == "sealed" and "key_b64" not in answer
    assert chosen.hex() not in json.dumps(answer)
    assert len(azure.vault.calls("unwrapkey")) == unwraps  # refused before the vault was asked
    assert "unsigned" in view(victim)["sealed_reason"] or "not made by the vault" in view(victim)["sealed_reason"]
    assert changed_items(before, snapshot_tables(TABLES)) == [(TABLES["TenantConfigTable"], victim)]

    assert read(Function("tenant_data"), bystander, "s") == (b"mine", 1)
    assert view(bystander)["status"] == "active"


def test_a_wrapped_key_moved_to_another_tenant_or_version_is_refused(azure, tenant_id):
    other = f"{tenant_id}-o"
    customer = azure.customer(tenant_id)
    azure.trust(customer, other)
    for tenant in (tenant_id, other):
        assert configure(tenant, "customer_kms_azure", customer.config)[0] == 200
    assert provision(tenant_id) == 201
    v1 = key_row(tenant_id, 1)
    moved = {"wrapped_key": v1["wrapped_key"], "key_id": v1["key_id"]}
    put_key_row({**key_row(other, 1), **moved})
    assert read_unwrap(other, 1)["error"]["code"] == "sealed"
    put_key_row({**key_row(tenant_id, 2), **moved})
    assert read_unwrap(tenant_id, 2)["error"]["code"] == "sealed"


def _aadsts(code: int) -> bytes:
    body = {"error": "invalid_client", "error_description": f"AADSTS{code}: test.", "error_codes": [code]}
    return json.dumps(body).encode()


def _remove_role(azure, customer):
    customer.key.crypto_users.discard(customer.client_id)


def _disable_key(azure, customer):
    customer.key.enabled = False


def _delete_key(azure, customer):
    del azure.vault.keys[(customer.key.host, customer.key.name)]


def _remove_federated_credential(azure, customer):
    azure.entra.remove_federation(customer.entra_tenant, customer.client_id, f"tenant:{customer.tenant_id}")


def _delete_application(azure, customer):
    del azure.entra.tenants[customer.entra_tenant][customer.client_id]


def _disable_application(azure, customer):
    azure.entra.application(customer.entra_tenant, customer.client_id).enabled = False


def _delete_entra_tenant(azure, customer):
    del azure.entra.tenants[customer.entra_tenant]


def _entra(status, raw=b"", content_type="text/html"):
    return lambda azure, _customer: azure.entra.fail_always(status, raw, content_type)


def _vault(status):
    return lambda azure, _customer: azure.vault.fail_always(status)


def _signing_throttled(azure, _customer):
    azure.federation_kms.fail_always("throttle")


def _federation_key(enabled: bool) -> Callable:
    def change(_azure, _customer):
        kms = boto3.client("kms")
        key_id = os.environ["FEDERATION_SIGNING_KEY_ID"].rsplit("/", 1)[1]  # moto takes the key id only
        (kms.enable_key if enabled else kms.disable_key)(KeyId=key_id)

    return change


@dataclass(frozen=True)
class Case:
    fault: Callable
    answer: str  # the unwrap's error code
    counted: str | None = None  # which fake counts the attempts
    attempts: int | None = None  # None: the configured KMS_MAX_ATTEMPTS
    warm: bool = False  # the instance already holds the key's type and an Entra token
    undo: Callable | None = None  # what ends the fault, beside the fakes' own reset


SEALED, UNAVAILABLE = "sealed", "provider_unavailable"
CLASSIFICATION = {
    "role assignment removed": Case(_remove_role, SEALED),
    "role assignment removed, warm instance": Case(_remove_role, SEALED, warm=True),
    "key disabled": Case(_disable_key, SEALED, warm=True),
    "key deleted": Case(_delete_key, SEALED),
    "federated credential removed": Case(_remove_federated_credential, SEALED),
    "application deleted": Case(_delete_application, SEALED),
    "application disabled": Case(_disable_application, SEALED),
    "Entra tenant deleted": Case(_delete_entra_tenant, SEALED),
    "Entra throttles": Case(_entra(429, b"", "text/plain"), UNAVAILABLE, "entra"),
    "Entra 503 with an HTML page": Case(_entra(503, b"<html>Service Unavailable</html>"), UNAVAILABLE, "entra"),
    "Entra 500 with an empty body": Case(_entra(500, b"", "application/json"), UNAVAILABLE, "entra"),
    "Entra drops the connection": Case(_entra("drop"), UNAVAILABLE, "entra"),
    "Entra blames our assertion's clock": Case(
        _entra(400, _aadsts(700024), "application/json"), UNAVAILABLE, "entra", attempts=1
    ),
    "Entra cannot verify our assertion's signature": Case(
        _entra(401, _aadsts(700027), "application/json"), UNAVAILABLE, "entra", attempts=1
    ),
    "Entra answers an undocumented code": Case(
        _entra(400, _aadsts(9999999), "application/json"), UNAVAILABLE, "entra", attempts=1
    ),
    "KMS throttles signing our assertion": Case(_signing_throttled, UNAVAILABLE, "entra", attempts=0),
    "our federation key disabled": Case(
        _federation_key(enabled=False), UNAVAILABLE, "entra", attempts=0, undo=_federation_key(enabled=True)
    ),
    "vault throttles a key read": Case(_vault(429), UNAVAILABLE, "vault"),
    "vault throttles an unwrap": Case(_vault(429), UNAVAILABLE, "vault", warm=True),
    "vault 503": Case(_vault(503), UNAVAILABLE, "vault"),
    "vault 503 on an unwrap": Case(_vault(503), UNAVAILABLE, "vault", warm=True),
    "vault's gateway answers 502 in HTML": Case(_vault(502), UNAVAILABLE, "vault", warm=True),
    "vault drops the connection": Case(_vault("drop"), UNAVAILABLE, "vault", warm=True),
}


@pytest.mark.parametrize("case", list(CLASSIFICATION))
def test_refusals_seal_and_faults_answer_503_with_nothing_sealed_or_cached(azure, tenant_id, case):
    case = CLASSIFICATION[case]
    customer = azure.customer(tenant_id)
    assert configure(tenant_id, "customer_kms_azure", customer.config)[0] == 200
    assert provision(tenant_id) == 201
    unwrap = Function("unwrap")  # a new instance: no session key, no Entra token yet
    if case.warm:
        assert unwrap(invoke_sample("unwrap_version", tenant_id, version=1))["version"] == 1
    max_attempts = unwrap.service.settings.kms_max_attempts
    before = snapshot_tables(TABLES)
    entra_requests, vault_requests = azure.entra.requests, len(azure.vault.requests)

    case.fault(azure, customer)
    answer = unwrap(invoke_sample("unwrap_version", tenant_id, version=2))

    assert answer.get("error", {}).get("code") == case.answer, answer
    if case.answer == SEALED:
        assert view(tenant_id)["status"] == "sealed"
        assert changed_items(before, snapshot_tables(TABLES)) == [(TABLES["TenantConfigTable"], tenant_id)]
        return
    if case.counted == "entra":
        made = azure.entra.requests - entra_requests
    else:
        made = len(azure.vault.requests) - vault_requests
    assert made == (max_attempts if case.attempts is None else case.attempts)
    assert snapshot_tables(TABLES) == before  # not sealed, nothing written
    azure.entra.fail_always(None)
    azure.vault.fail_always(None)
    azure.federation_kms.fail_always(None)
    if case.undo:
        case.undo(azure, customer)
    unwraps = len(azure.vault.calls("unwrapkey"))
    assert unwrap(invoke_sample("unwrap_version", tenant_id, version=2))["version"] == 2  # the same instance recovers
    assert len(azure.vault.calls("unwrapkey")) == unwraps + 1  # nothing was cached from the failure


@pytest.mark.parametrize("provider", ["customer_kms_azure", "operator_kms_azure"])
def test_a_token_the_vault_no_longer_takes_is_exchanged_again_and_never_seals(azure, tenant_id, provider):
    """Key Vault answers a token it no longer takes (expired by its clock, revoked) with a new
    401 challenge. Catches: the 401 taken as the customer's refusal (the tenant would seal),
    or the held token presented again (503 for up to the token's hour, operator included)."""
    config = azure.customer(tenant_id).config if provider == "customer_kms_azure" else {}
    assert configure(tenant_id, provider, config)[0] == 200
    assert provision(tenant_id) == 201
    unwrap = Function("unwrap")
    assert unwrap(invoke_sample("unwrap_version", tenant_id, version=1))["version"] == 1  # holds an Entra token
    before, entra_requests, challenges = snapshot_tables(TABLES), azure.entra.requests, azure.vault.challenges
    azure.entra.expire_tokens()

    assert unwrap(invoke_sample("unwrap_version", tenant_id, version=2))["version"] == 2
    assert azure.vault.challenges > challenges  # the old token was presented and refused
    assert azure.entra.requests - entra_requests == 1  # one new exchange
    assert snapshot_tables(TABLES) == before and view(tenant_id)["status"] == "active"


def test_a_vault_that_keeps_refusing_our_tokens_answers_503_and_never_seals(azure, tenant_id, monkeypatch):
    """Every token Entra issues is refused by the vault: ours to fix. Catches: sealing on a
    vault 401, or exchanging without bound (one new exchange per call, then 503)."""
    customer = azure.customer(tenant_id)
    assert configure(tenant_id, "customer_kms_azure", customer.config)[0] == 200
    unwrap = Function("unwrap")
    before, entra_requests = snapshot_tables(TABLES), azure.entra.requests
    monkeypatch.setattr(azure.vault.entra, "token", lambda _token: None)  # the vault takes no token

    answer = unwrap(invoke_sample("unwrap", tenant_id))

    assert answer["error"]["code"] == "provider_unavailable" and "key_b64" not in answer, answer
    assert "did not accept our token (HTTP 401)" in answer["error"]["message"]
    assert azure.entra.requests - entra_requests == 2  # the first token, then one fresh exchange
    assert snapshot_tables(TABLES) == before and view(tenant_id)["status"] == "active"


class LateVault:
    """azure-core's own transport with its waits on an injected clock: the vault's next ``count``
    answers come ``seconds`` after the request, and an attempt that reads for less times out
    as a socket read does (the vault received the request either way)."""

    def __init__(self, clock: Clock, host: str, *, seconds: float, count: int) -> None:
        self.clock, self.host, self.seconds, self.count = clock, host, seconds, count
        self.timed_out: list[float] = []  # the read timeout each late attempt was given

    def install(self, monkeypatch) -> None:
        send, late = RequestsTransport.send, self

        def clocked_send(transport, request, **kwargs):
            answer = send(transport, request, **kwargs)
            if late.count and urlsplit(request.url).hostname == late.host:
                late.count -= 1
                read = kwargs.get("read_timeout", transport.connection_config.read_timeout)
                late.clock.advance(min(read, late.seconds))
                if late.seconds > read:
                    late.timed_out.append(read)
                    raise ServiceResponseTimeoutError("Read timed out")
            return answer

        monkeypatch.setattr(RequestsTransport, "send", clocked_send)
        monkeypatch.setattr(RequestsTransport, "sleep", lambda _transport, seconds: late.clock.advance(seconds))


def test_a_vault_that_does_not_answer_in_time_is_unavailable(azure, tenant_id, monkeypatch):
    """Catches: a read timeout sealing the tenant or leaving a row changed, attempts past
    KMS_MAX_ATTEMPTS, an attempt reading longer than KMS_READ_TIMEOUT_SECONDS, or an instance
    that stays broken once the vault answers again."""
    customer = azure.customer(tenant_id)
    assert configure(tenant_id, "customer_kms_azure", customer.config)[0] == 200
    monkeypatch.setenv("KMS_READ_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("KMS_MAX_ATTEMPTS", "2")
    clock = Clock(0.0)
    late = LateVault(clock, urlsplit(customer.config["key_id"]).hostname, seconds=2.5, count=2)
    late.install(monkeypatch)
    unwrap = Function("unwrap")
    before = snapshot_tables(TABLES)
    answer = unwrap(invoke_sample("unwrap", tenant_id))
    assert answer["error"]["code"] == "provider_unavailable"
    assert snapshot_tables(TABLES) == before
    assert late.timed_out == [1, 1], late.timed_out
    assert unwrap(invoke_sample("unwrap", tenant_id))["version"] == 1
    assert view(tenant_id)["status"] == "active"


def _restore_role(azure, customer):
    customer.key.crypto_users.add(customer.client_id)


def _restore_federated_credential(azure, customer):
    azure.trust(customer, customer.tenant_id)


def unseal(tenant_id: str) -> tuple[int, dict]:
    return Function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))


@pytest.mark.parametrize(
    ("revoke", "restore"),
    [(_remove_role, _restore_role), (_remove_federated_credential, _restore_federated_credential)],
    ids=["role assignment", "federated credential"],
)
def test_kill_switch_seals_every_version_within_the_ttl_until_unsealed(azure, tenant_id, revoke, restore, monkeypatch):
    # Given two versions under the customer's key, each with a record, read by a warm instance
    customer = azure.customer(tenant_id)
    assert configure(tenant_id, "customer_kms_azure", customer.config)[0] == 200
    put = Function("tenant_data")
    assert put(invoke_sample("tenant_data_put", tenant_id, name="one", value_b64=b64(b"1")))["version"] == 1
    assert provision(tenant_id) == 201
    assert put(invoke_sample("tenant_data_put", tenant_id, name="two", value_b64=b64(b"2")))["version"] == 2
    records = {"one": (b"1", 1), "two": (b"2", 2)}
    clock = Clock()
    monkeypatch.setattr(azure_kv, "time", SimpleNamespace(time=clock))  # the Entra token's age, too
    data = Function("tenant_data")
    data.service.clock = clock
    assert {name: read(data, tenant_id, name) for name in records} == records

    # When the customer revokes, the session keys (and the Entra token) serve out the TTL
    revoke(azure, customer)
    clock.advance(299)
    assert {name: read(data, tenant_id, name) for name in records} == records
    clock.advance(2)
    assert read(data, tenant_id, "two") == "sealed"
    assert view(tenant_id)["status"] == "sealed"

    # Then every key operation on every version answers sealed, asking neither Entra nor the vault
    entra_requests, vault_requests = azure.entra.requests, len(azure.vault.requests)
    before = snapshot_tables(TABLES)
    answers = [
        read(data, tenant_id, "one"),
        read(Function("tenant_data"), tenant_id, "two"),
        read_unwrap(tenant_id, 1)["error"]["code"],
        read_unwrap(tenant_id)["error"]["code"],
        Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[1]["error"]["code"],
    ]
    assert answers == ["sealed"] * len(answers)
    assert (azure.entra.requests, len(azure.vault.requests)) == (entra_requests, vault_requests)
    assert snapshot_tables(TABLES) == before

    # While revoked, unsealing is refused and changes nothing
    status, body = unseal(tenant_id)
    assert (status, body["error"]["code"]) == (422, "verification_failed"), body
    assert snapshot_tables(TABLES) == before

    # When the customer restores it, the unseal route lifts the seal and every record opens again
    restore(azure, customer)
    status, body = unseal(tenant_id)
    assert (status, body["status"]) == (200, "active"), body
    assert {name: read(data, tenant_id, name) for name in records} == records
    assert {name: read(Function("tenant_data"), tenant_id, name) for name in records} == records


def test_another_tenant_cannot_use_a_key_trusted_for_this_one(azure, tenant_id):
    intruder = f"{tenant_id}-x"
    customer = azure.customer(tenant_id)  # trusts tenant:<tenant_id> only
    before = snapshot_tables(TABLES)
    status, answer = configure(intruder, "customer_kms_azure", customer.config)
    assert (status, answer["error"]["code"]) == (422, "verification_failed")
    assert "AADSTS700213" in answer["error"]["message"]
    assert azure.entra.subjects(customer.client_id) == [f"tenant:{intruder}"]
    assert changed_items(before, snapshot_tables(TABLES)) in ([], [(TABLES["TenantConfigTable"], intruder)])
    assert not azure.vault.calls("wrapkey", customer.client_id)


def test_a_rotated_key_wraps_new_versions_under_its_current_version_and_still_unwraps_old_ones(azure, tenant_id):
    customer = azure.customer(tenant_id)
    assert configure(tenant_id, "customer_kms_azure", customer.config)[0] == 200
    first = customer.key.current
    second = customer.key.rotate()
    assert provision(tenant_id) == 201
    assert [v["key_id"].rsplit("/", 1)[1] for v in versions(tenant_id)] == [first, second]
    assert read_unwrap(tenant_id, 1)["version"] == 1 and read_unwrap(tenant_id, 2)["version"] == 2


def test_a_configured_key_version_is_the_one_that_wraps(azure, tenant_id):
    customer = azure.customer(tenant_id)
    pinned = customer.key.current
    customer.key.rotate()
    config = {**customer.config, "key_id": f"{customer.config['key_id']}/{pinned}"}
    assert configure(tenant_id, "customer_kms_azure", config)[0] == 200
    assert [v["key_id"].rsplit("/", 1)[1] for v in versions(tenant_id)] == [pinned]


def test_a_key_in_another_entra_tenant_than_configured_is_refused_at_configure(azure, tenant_id):
    customer = azure.customer(tenant_id)
    config = {**customer.config, "tenant_id": str(uuid.uuid4())}
    before = snapshot_tables(TABLES)
    status, answer = configure(tenant_id, "customer_kms_azure", config)
    assert (status, answer["error"]["code"]) == (422, "verification_failed")
    assert "another Entra tenant" in answer["error"]["message"]
    assert changed_items(before, snapshot_tables(TABLES)) in ([], [(TABLES["TenantConfigTable"], tenant_id)])


def test_the_fake_vault_lets_a_crypto_user_read_the_key_as_the_service_does(azure, tenant_id):
    # Why the adapter does not use CryptographyClient: given a key it can read, the SDK
    # wraps locally with the public key and the vault never sees (or names) the wrap.
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

    customer = azure.customer(tenant_id)
    identities = providers.Identities(Settings.from_env())
    credential = azure_kv.federated_credential(
        tenant_id=customer.entra_tenant,
        client_id=customer.client_id,
        token_source=providers._azure_assertion_source(identities, tenant_id),
    )
    client = CryptographyClient(customer.config["key_id"], credential)
    client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, os.urandom(32))
    assert azure.vault.calls("get", customer.client_id) and not azure.vault.calls("wrapkey", customer.client_id)
