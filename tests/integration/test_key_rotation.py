"""Rotating the global master key with nothing sealed: versions made under K1 keep reading
once the deployment holds "K2,K1", new versions wrap under K2, the scheduled sweep re-wraps
every live version under K2 (same TMK, records untouched), and a deployment on K2 alone
serves every tenant. The same through the Secrets Manager secret's AWSCURRENT/AWSPREVIOUS.
The schedule runs as deployed: its run sends a unit per tenant to the rewrap sweep queue,
and the queue's event source (moto's SQS, Lambda's event) hands them to the function."""

from __future__ import annotations

import json
import os
import secrets

import boto3
import pytest
from deployment import deploy_master_keys, own_tables
from support import (
    JOB_TIMEOUT_MS,
    Function,
    b64,
    http_sample,
    invoke_sample,
    read_record,
    run_rewrap,
    sample,
    structured_logs,
)

from kms_wrapping.global_wrap import master_key_id
from tenant_kms.models import KeyVersion
from tenant_kms.sweeps import Sweeps

K1, K2, K3 = (secrets.token_bytes(32) for _ in range(3))


@pytest.fixture
def deployment(monkeypatch, queues):
    own_tables(monkeypatch)
    return queues


def keys_sweep(status: dict) -> dict[str, int]:
    """The re-wrap sweep's totals, once every tenant was visited."""
    keys = status["rewrap_wrapping_keys"]
    assert keys["finished"], keys
    return keys["totals"]


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

    # When the scheduled sweeps come
    capsys.readouterr()
    with structured_logs() as logs:
        swept = deployment.rewrap_schedule()

    # Then the rewrap sweep started the jobs of the tenants with records on a retired version
    assert swept["rewrap"]["totals"] == {"job_started": 2, "nothing_pending": 1}
    # and the re-wrap sweep re-wrapped every live version still under K1: none is left on an old key
    keys = keys_sweep(swept)
    assert keys == {"checked": len(key_ids) + 1, "current": 1, "rewrapped": len(key_ids)}
    printed = capsys.readouterr().out
    assert ({"service": "tenant-kms", "provider": "global"}, 0.0) in emitted_in(printed, "KeyVersionsOnOldWrappingKey")
    assert sum(value for _, value in emitted_in(printed, "KeyVersionsRewrapped")) == len(key_ids)
    assert emitted_in(printed, "KeyVersionRewrapFailures") == []
    audited = [json.loads(line)["audit"] for line in logs.getvalue().splitlines() if "rewrap_key_version" in line]
    assert sorted((a["tenant_id"], a["version"], a["actor"], a["to_key_id"]) for a in audited) == sorted(
        (tenant, version, "schedule", master_key_id(K2)) for tenant, version in key_ids
    )
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
    again = keys_sweep(deployment.rewrap_schedule())
    assert again == {"checked": len(key_ids) + 1, "current": len(key_ids) + 1}


def test_the_operator_triggers_the_rewrap_by_direct_invoke(deployment, monkeypatch):
    deploy_master_keys(monkeypatch, K1)
    values = given_tenants(["acme"])
    deploy_master_keys(monkeypatch, K2, K1)
    tmk_before = Function("unwrap")(invoke_sample("unwrap_version", "acme", version=1))["key_b64"]
    operator = Function("rewrap")

    # When the operator invokes it: the re-wrap sweep starts; invoked again before its units
    # are visited, it answers the same sweep rather than starting another
    answer = operator(sample("rewrap_wrapping_keys"), timeout_ms=JOB_TIMEOUT_MS)
    assert (answer["sweep"], answer["status"], answer["sent"], answer["finished"]) == (
        "rewrap_wrapping_keys",
        "paged",
        1,
        False,
    )
    again = operator(sample("rewrap_wrapping_keys"), timeout_ms=JOB_TIMEOUT_MS)
    assert (again["sweep_id"], again["sent"], again["resumed"]) == (answer["sweep_id"], 1, True)
    consumer = Function("rewrap")
    deployment.deliver(deployment.urls["RewrapSweepQueue"], consumer)

    # Then acme's two versions were re-wrapped, and the sweep says so
    done = operator(sample("rewrap_wrapping_keys"), timeout_ms=JOB_TIMEOUT_MS)
    assert done["sweep_id"] != answer["sweep_id"]  # that one finished: this is the next
    status = consumer.module.sweeps.status("rewrap_wrapping_keys")
    assert status["sweep_id"] == done["sweep_id"]
    assert Sweeps.visit_of("rewrap_wrapping_keys", "acme") == {
        "sweep_id": answer["sweep_id"],
        "state": "done",
        "outcome": "checked,rewrapped",
    }
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

    status = deployment.rewrap_schedule(rewrap)

    assert keys_sweep(status) == {"checked": 2, "on_old_key": 2, "on_old_key.global": 2, "rewrapped": 2, "sealed": 1}
    assert "acme" not in unwraps
    assert Sweeps.visit_of("rewrap_wrapping_keys", "acme")["outcome"] == "on_old_key,on_old_key.global,sealed"
    # and its records wait: a sealed tenant's job is not started
    assert Sweeps.visit_of("rewrap", "acme")["outcome"] == "sealed"


@pytest.fixture
def secrets_manager(moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server)
    return boto3.client("secretsmanager")


def test_master_key_rotation_through_the_secret(deployment, secrets_manager, monkeypatch):
    # Given a deployment reading its master key from the secret, tenants under K1
    arn = secrets_manager.create_secret(Name=f"mk-{os.environ['CONFIG_TABLE']}", SecretString=b64(K1))["ARN"]
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
    keys = keys_sweep(deployment.rewrap_schedule())
    assert (keys["rewrapped"], keys.get("on_old_key", 0)) == (4, 0)
    secrets_manager.put_secret_value(SecretId=arn, SecretString=b64(K3))

    # Then every record of every tenant reads on fresh instances, and every tenant is active
    values["acme"]["v3"] = b"under K2"
    every_record_reads(values)
    assert [status(t) for t in values] == ["active", "active"]


def test_a_visit_out_of_time_is_left_to_come_again_and_the_sweep_finishes(deployment, monkeypatch):
    deploy_master_keys(monkeypatch, K1)
    values = given_tenants(["acme", "globex"])
    deploy_master_keys(monkeypatch, K2, K1)
    rotation = Function("rewrap").module.rotation
    checks = iter(range(100))

    # A visit runs out of time after acme's first version: it raises, so the unit comes again
    with pytest.raises(TimeoutError):
        rotation.rewrap_tenant("acme", actor="test", should_stop=lambda: next(checks) >= 1)

    keys = keys_sweep(deployment.rewrap_schedule())
    assert keys == {"checked": 4, "current": 1, "rewrapped": 3}
    deploy_master_keys(monkeypatch, K2)
    every_record_reads(values)
