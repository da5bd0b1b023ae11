"""Rotating the global master key with nothing sealed: versions made under K1 keep reading
once the deployment holds "K2,K1", new versions wrap under K2, the scheduled run re-wraps
every live version under K2 (same TMK, records untouched), and a deployment on K2 alone
serves every tenant. The same through the Secrets Manager secret's AWSCURRENT/AWSPREVIOUS."""

from __future__ import annotations

import json
import secrets

import boto3
import pytest
from deployment import deploy_master_keys, own_tables
from support import JOB_TIMEOUT_MS, Function, b64, http_sample, invoke_sample, read_record, run_rewrap, sample

from kms_wrapping.global_wrap import master_key_id
from tenant_kms.models import KeyVersion

K1, K2, K3 = (secrets.token_bytes(32) for _ in range(3))


@pytest.fixture
def deployment(monkeypatch):
    return own_tables(monkeypatch)


def given_tenants(names: list[str]) -> dict[str, dict[str, bytes]]:
    """Each tenant with records on a retired version 1 and on the active version 2."""
    configure, provision, data = Function("configure"), Function("provision"), Function("tenant_data")
    values = {}
    for tenant in names:
        assert configure.http(http_sample("configure_put_global", tenant))[0] == 200
        values[tenant] = {f"v1-{i}": secrets.token_bytes(16) for i in range(2)}
        put(data, tenant, values[tenant])
        assert provision.http(http_sample("provision_post", tenant))[0] == 201
        later = {f"v2-{i}": secrets.token_bytes(16) for i in range(2)}
        put(data, tenant, later)
        values[tenant].update(later)
    return values


def put(data: Function, tenant: str, values: dict[str, bytes]) -> None:
    for name, value in values.items():
        assert "version" in data(invoke_sample("tenant_data_put", tenant, name=name, value_b64=b64(value)))


def versions(tenant: str) -> list[dict]:
    return Function("provision").http(http_sample("provision_list", tenant))[1]["versions"]


def every_record_reads(values: dict[str, dict[str, bytes]]) -> None:
    data = Function("tenant_data")
    for tenant, records in values.items():
        for name, value in records.items():
            got = read_record(data, tenant, name)
            assert not isinstance(got, str) and got[0] == value, (tenant, name, got)


def status(tenant: str) -> str:
    return Function("configure").http(http_sample("configure_get", tenant))[1]["status"]


def emitted(capsys, name: str) -> list[tuple[dict, float]]:
    """Every value of metric ``name`` the functions printed (EMF), with its dimensions."""
    return emitted_in(capsys.readouterr().out, name)


def emitted_in(printed: str, name: str) -> list[tuple[dict, float]]:
    found = []
    for line in printed.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            if name in blob:
                dims = {d: blob[d] for group in blob["_aws"]["CloudWatchMetrics"] for d in group["Dimensions"][0]}
                found.extend((dims, value) for value in blob[name])
    return found


def test_master_key_rotation_end_to_end(deployment, monkeypatch, capsys):
    # Given tenants under K1, one of which destroyed its retired version
    deploy_master_keys(monkeypatch, K1)
    values = given_tenants(["acme", "globex", "initech"])
    assert run_rewrap("initech")["status"] == "succeeded"
    assert Function("provision").http(http_sample("provision_destroy", "initech", version=1))[0] == 204

    # When the deployment holds "K2,K1"
    deploy_master_keys(monkeypatch, K2, K1)

    # Then every record still reads and a new version wraps under K2
    every_record_reads(values)
    assert Function("provision").http(http_sample("provision_post", "acme"))[1] == {"version": 3, "status": "active"}
    key_ids = {(t, v["version"]): v["key_id"] for t in values for v in versions(t) if v["status"] != "destroyed"}
    assert key_ids.pop(("acme", 3)) == master_key_id(K2)
    assert set(key_ids.values()) == {master_key_id(K1)}
    destroyed_before = KeyVersion.get("initech", 1, consistent_read=True).attribute_values

    # When the scheduled run comes
    capsys.readouterr()
    summary = Function("rewrap")(sample("rewrap_scheduled"), timeout_ms=JOB_TIMEOUT_MS)

    # Then it re-wrapped every live version still under K1, and says none is left on an old key
    keys = summary["wrapping_keys"]
    assert (keys["rewrapped"], keys["on_old_key"], keys["failed"], keys["complete"]) == (len(key_ids), 0, [], True)
    assert keys["on_old_key_by_provider"] == {}
    printed = capsys.readouterr().out
    assert ({"service": "tenant-kms", "provider": "global"}, 0.0) in emitted_in(printed, "KeyVersionsOnOldWrappingKey")
    assert [value for _, value in emitted_in(printed, "KeyVersionsRewrapped")] == [len(key_ids)]
    assert emitted_in(printed, "KeyVersionRewrapFailures") == []
    for tenant in values:
        live = [v for v in versions(tenant) if v["status"] != "destroyed"]
        assert {v["key_id"] for v in live} == {master_key_id(K2)}, tenant
    # and left the destroyed version exactly as it was
    assert KeyVersion.get("initech", 1, consistent_read=True).attribute_values == destroyed_before

    # When the deployment holds K2 alone
    deploy_master_keys(monkeypatch, K2)

    # Then every tenant is active, every record and version readable, nothing sealed
    every_record_reads(values)
    unwrap = Function("unwrap")
    for tenant in values:
        for v in versions(tenant):
            if v["status"] != "destroyed":
                assert "key_b64" in unwrap(invoke_sample("unwrap_version", tenant, version=v["version"])), v
        assert status(tenant) == "active"
    again = Function("rewrap")(sample("rewrap_scheduled"), timeout_ms=JOB_TIMEOUT_MS)["wrapping_keys"]
    assert (again["rewrapped"], again["on_old_key"], again["sealed"]) == (0, 0, [])


def test_the_operator_triggers_the_rewrap_by_direct_invoke(deployment, monkeypatch):
    deploy_master_keys(monkeypatch, K1)
    values = given_tenants(["acme"])
    deploy_master_keys(monkeypatch, K2, K1)
    tmk_before = Function("unwrap")(invoke_sample("unwrap_version", "acme", version=1))["key_b64"]

    answer = Function("rewrap")(sample("rewrap_wrapping_keys"), timeout_ms=JOB_TIMEOUT_MS)

    assert (answer["rewrapped"], answer["on_old_key"], answer["complete"]) == (2, 0, True)
    deploy_master_keys(monkeypatch, K2)
    # The TMK is the same one: records sealed under it before the re-wrap still open
    assert Function("unwrap")(invoke_sample("unwrap_version", "acme", version=1))["key_b64"] == tmk_before
    every_record_reads(values)


def test_sealed_tenants_are_skipped_reported_and_not_failures(deployment, monkeypatch):
    deploy_master_keys(monkeypatch, K1)
    given_tenants(["acme", "globex"])
    deploy_master_keys(monkeypatch, K2)  # K1 dropped too early: acme's next use seals it
    assert read_record(Function("tenant_data"), "acme", "v1-0") == "sealed"
    deploy_master_keys(monkeypatch, K2, K1)
    rewrap = Function("rewrap")
    unwraps = []
    wrapper = rewrap.service.registry.wrapper_for("global", {}, "")
    real_unwrap = wrapper.unwrap
    wrapper.unwrap = lambda wrapped, context: unwraps.append(context.tenant_id) or real_unwrap(wrapped, context)

    keys = rewrap(sample("rewrap_scheduled"), timeout_ms=JOB_TIMEOUT_MS)["wrapping_keys"]

    assert keys["sealed"] == ["acme"] and keys["failed"] == [] and "acme" not in unwraps
    assert keys["rewrapped"] == 2 and keys["on_old_key"] == 2 and keys["on_old_key_by_provider"] == {"global": 2}
    assert keys["complete"] is False


@pytest.fixture
def secrets_manager(moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server)
    return boto3.client("secretsmanager")


def test_master_key_rotation_through_the_secret(deployment, secrets_manager, monkeypatch):
    # Given a deployment reading its master key from the secret, tenants under K1
    arn = secrets_manager.create_secret(Name=f"mk-{deployment['TenantConfigTable']}", SecretString=b64(K1))["ARN"]
    monkeypatch.setenv("MASTER_KEY_B64", "")
    monkeypatch.setenv("MASTER_KEY_SECRET_ID", arn)
    values = given_tenants(["acme", "globex"])
    behind = Function("tenant_data")  # an instance that read the secret before the rotation
    assert read_record(behind, "acme", "v2-0") == (values["acme"]["v2-0"], 2)

    # When the secret rotates (K2 becomes AWSCURRENT, K1 AWSPREVIOUS) and a new instance provisions
    secrets_manager.put_secret_value(SecretId=arn, SecretString=b64(K2))
    assert Function("provision").http(http_sample("provision_post", "acme"))[0] == 201
    put(Function("tenant_data"), "acme", {"v3": b"under K2"})

    # Then the instance behind the rotation still reads it, and nothing is sealed
    assert read_record(behind, "acme", "v3") == (b"under K2", 3)
    assert status("acme") == "active"

    # When the scheduled run re-wraps, and the secret rotates once more (K1 leaves the ring)
    keys = Function("rewrap")(sample("rewrap_scheduled"), timeout_ms=JOB_TIMEOUT_MS)["wrapping_keys"]
    assert (keys["rewrapped"], keys["on_old_key"]) == (4, 0)
    secrets_manager.put_secret_value(SecretId=arn, SecretString=b64(K3))

    # Then every record of every tenant reads on fresh instances, and every tenant is active
    values["acme"]["v3"] = b"under K2"
    every_record_reads(values)
    assert [status(t) for t in values] == ["active", "active"]


def test_a_run_cut_short_says_what_is_left_and_the_next_one_finishes(deployment, monkeypatch):
    deploy_master_keys(monkeypatch, K1)
    values = given_tenants(["acme", "globex"])
    deploy_master_keys(monkeypatch, K2, K1)
    rotation = Function("rewrap").module.rotation
    checks = iter(range(100))

    cut = rotation.run(actor="test", should_stop=lambda: next(checks) >= 5)  # asked per tenant and per version

    assert (cut["rewrapped"], cut["on_old_key"], cut["complete"]) == (3, 1, False)
    rest = Function("rewrap")(sample("rewrap_wrapping_keys"), timeout_ms=JOB_TIMEOUT_MS)
    assert (rest["checked"], rest["rewrapped"], rest["on_old_key"], rest["complete"]) == (4, 1, 0, True)
    deploy_master_keys(monkeypatch, K2)
    every_record_reads(values)
