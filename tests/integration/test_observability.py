"""What the README promises operators see, read from the real output: the EMF metrics the
functions print and the audit entries they log, seal and unseal included; and the default
a tenant gets when its admin provisions before configuring."""

from __future__ import annotations

import json

import boto3
from support import (
    Function,
    b64,
    emf_metrics,
    http_sample,
    invoke_sample,
    key_versions,
    read_record,
    run_job,
    run_purge,
    run_rewrap,
    step_up,
    structured_logs,
)
from testenv import TABLES


def audit_entries(logs: str, tenant_id: str) -> list[dict]:
    entries = [json.loads(line).get("audit") for line in logs.splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry and entry["tenant_id"] == tenant_id]


def version_row(tenant_id: str, version: int) -> dict:
    key = {"tenant_id": {"S": tenant_id}, "version": {"N": str(version)}}
    return boto3.client("dynamodb").get_item(TableName=TABLES["KeyVersionTable"], Key=key, ConsistentRead=True)["Item"]


def put_version_row(row: dict) -> None:
    boto3.client("dynamodb").put_item(TableName=TABLES["KeyVersionTable"], Item=row)


def test_a_tenant_lifecycle_emits_the_documented_metrics_and_audits_seal_and_unseal(tenant_id, capsys):
    """Catches a metric the README lists (SessionCacheHits/Misses, ProviderLatency,
    KeyVersionsProvisioned, TenantsSealed, TenantsUnsealed, RecordsRewrapped,
    RecordsPendingRewrap) no longer emitted, or emitted on the wrong event, and a seal or
    unseal that leaves no audit entry."""
    capsys.readouterr()
    with structured_logs() as logs:
        # A global tenant: a version, a record written (cache miss) and read back (cache hit)
        assert Function("configure").http(step_up(http_sample("configure_put_global", tenant_id)))[0] == 200
        data = Function("tenant_data")
        assert data(invoke_sample("tenant_data_put", tenant_id, name="a", value_b64=b64(b"a")))["version"] == 1
        assert read_record(data, tenant_id, "a") == (b"a", 1)
        first = emf_metrics(capsys.readouterr().out)

        # A second version; the rewrap moves the record onto it
        assert Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[0] == 201
        assert run_rewrap(tenant_id)["status"] == "succeeded"
        second = emf_metrics(capsys.readouterr().out)

        # The provider refuses the active version (its row holds version 1's wrapped key): sealed
        intact = version_row(tenant_id, 2)
        put_version_row({**intact, "wrapped_key": version_row(tenant_id, 1)["wrapped_key"]})
        assert read_record(Function("tenant_data"), tenant_id, "a") == "sealed"
        sealed = emf_metrics(capsys.readouterr().out)

        # It unwraps again: the unseal route lifts the seal
        put_version_row(intact)
        assert Function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))[0] == 200
        unsealed = emf_metrics(capsys.readouterr().out)

    assert first["KeyVersionsProvisioned"] == [1.0]
    assert first["SessionCacheMisses"] == [1.0] and first["SessionCacheHits"] == [1.0]
    assert first["ProviderLatency"] and min(first["ProviderLatency"]) >= 0  # the probe's and the unwrap's
    assert second["KeyVersionsProvisioned"] == [1.0]
    assert sum(second["RecordsRewrapped"]) == 1.0 and "RecordsPendingRewrap" in second
    assert sealed["TenantsSealed"] == [1.0] and "TenantsUnsealed" not in sealed
    assert unsealed["TenantsUnsealed"] == [1.0] and "TenantsSealed" not in unsealed

    entries = audit_entries(logs.getvalue(), tenant_id)
    seal = [e for e in entries if e["action"] == "seal"]
    assert len(seal) == 1 and (seal[0]["actor"], seal[0]["provider"]) == ("system", "global")
    assert "version 2" in seal[0]["reason"]
    unseal = [e for e in entries if e["action"] == "unseal"]
    assert [(e["actor"], e["outcome"]) for e in unseal] == [("alice@acme.example", "success")]


def test_provisioning_an_unconfigured_tenant_gives_it_the_global_wrap(tenant_id):
    """Catches POST /keys refusing a tenant that was never configured, or provisioning it
    under anything but the global default."""
    status, body = Function("provision").http(step_up(http_sample("provision_post", tenant_id)))
    assert (status, body) == (201, {"version": 1, "status": "active"})
    view = Function("configure").http(http_sample("configure_get", tenant_id))[1]
    assert (view["provider"], view["status"], view["active_version"]) == ("global", "active", 1)
    assert [(v["version"], v["provider"], v["status"]) for v in key_versions(tenant_id)] == [(1, "global", "active")]
    assert Function("unwrap")(invoke_sample("unwrap", tenant_id))["provider"] == "global"


def test_rewrap_jobs_and_an_erasure_emit_the_documented_metrics(tenant_id, capsys):
    """Catches a job or erasure metric the README lists (RewrapJobsStarted, RewrapJobsSucceeded,
    RewrapJobsFailed, TenantsErased, PurgeJobsStarted, PurgeJobsSucceeded) no longer emitted,
    or emitted on the wrong event."""
    # Given a record under version 1 of a global tenant, and version 2 active
    assert Function("configure").http(step_up(http_sample("configure_put_global", tenant_id)))[0] == 200
    data = Function("tenant_data")
    assert data(invoke_sample("tenant_data_put", tenant_id, name="a", value_b64=b64(b"a")))["version"] == 1
    assert Function("provision").http(step_up(http_sample("provision_post", tenant_id)))[0] == 201
    rewrap = Function("rewrap")
    capsys.readouterr()

    # When a job starts and the provider refuses the active version before its batch: it fails
    status, job = rewrap.http(http_sample("rewrap_post", tenant_id))
    assert status == 202
    started = emf_metrics(capsys.readouterr().out)
    intact = version_row(tenant_id, 2)
    put_version_row({**intact, "wrapped_key": version_row(tenant_id, 1)["wrapped_key"]})
    failed_job = run_job(rewrap, job)
    assert (failed_job["status"], failed_job["error"]["code"]) == ("failed", "sealed")
    failed = emf_metrics(capsys.readouterr().out)

    # When the version unwraps again, the tenant is unsealed and a new job runs to its end
    put_version_row(intact)
    assert Function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))[0] == 200
    capsys.readouterr()
    assert run_rewrap(tenant_id, rewrap)["status"] == "succeeded"
    succeeded = emf_metrics(capsys.readouterr().out)

    # When the tenant is erased, and its purge runs to its end
    assert Function("erase").http(step_up(http_sample("erase_delete", tenant_id))) == (204, None)
    erased = emf_metrics(capsys.readouterr().out)
    assert run_purge(tenant_id, rewrap)["status"] == "succeeded"
    purged = emf_metrics(capsys.readouterr().out)

    assert started["RewrapJobsStarted"] == [1.0]
    assert failed["RewrapJobsFailed"] == [1.0] and "RewrapJobsSucceeded" not in failed
    assert succeeded["RewrapJobsStarted"] == [1.0] and succeeded["RewrapJobsSucceeded"] == [1.0]
    assert "RewrapJobsFailed" not in succeeded
    assert erased["TenantsErased"] == [1.0] and erased["PurgeJobsStarted"] == [1.0]
    assert purged["PurgeJobsSucceeded"] == [1.0] and "TenantsErased" not in purged
