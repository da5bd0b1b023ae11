"""The whole key lifecycle through the handlers, driven by the events/ samples."""

from __future__ import annotations

import base64
import os

import boto3
from support import (
    Function,
    assert_no_key_material,
    b64,
    http_sample,
    invoke_sample,
    run_rewrap,
    snapshot_tables,
    structured_logs,
)
from testenv import MASTER_KEY, TABLES

from tenant_kms.sealing import open_record


def test_global_lifecycle_end_to_end_leaks_no_key_material(tenant_id, capfd):
    with structured_logs() as logs:
        lifecycle(tenant_id, capfd, logs)


def lifecycle(tenant_id, capfd, logs):
    configure, provision, data = Function("configure"), Function("provision"), Function("tenant_data")
    rewrap, unwrap = Function("rewrap"), Function("unwrap")

    # Given a tenant configured on the global wrap
    status, view = configure.http(http_sample("configure_put_global", tenant_id))
    assert status == 200
    assert view["provider"] == "global" and view["status"] == "active" and view["active_version"] == 1
    assert view["last_verified_at"] and view["last_verify_error"] is None
    assert view["session_ttl_seconds"] == 3600

    # and 50 records written under version 1
    plaintexts = {f"secret-{i:02d}": os.urandom(24 + i) for i in range(50)}
    for name, value in plaintexts.items():
        assert data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value))) == {
            "name": name,
            "version": 1,
        }

    # When version 2 is provisioned
    status, created = provision.http(http_sample("provision_post", tenant_id))
    assert (status, created) == (201, {"version": 2, "status": "active"})

    # Then every record still reads, from version 1, and new writes use version 2
    for name, value in plaintexts.items():
        got = data(invoke_sample("tenant_data_get", tenant_id, name=name))
        assert (base64.b64decode(got["value_b64"]), got["version"]) == (value, 1)
    assert data(invoke_sample("tenant_data_put", tenant_id, name="new-on-v2", value_b64=b64(b"fresh")))["version"] == 2
    plaintexts["new-on-v2"] = b"fresh"

    status, listed = provision.http(http_sample("provision_list", tenant_id))
    versions = {v["version"]: v for v in listed["versions"]}
    assert versions[1]["status"] == "retired" and versions[1]["records"] == 50 and versions[1]["retired_at"]
    assert versions[2]["status"] == "active" and versions[2]["records"] == 1

    # When the rewrap runs
    job = run_rewrap(tenant_id, rewrap)
    assert (job["status"], job["migrated"], job["remaining"]) == ("succeeded", 50, 0)

    # Then every record is on version 2 with its plaintext unchanged
    for name, value in plaintexts.items():
        got = data(invoke_sample("tenant_data_get", tenant_id, name=name))
        assert (base64.b64decode(got["value_b64"]), got["version"]) == (value, 2)
    listed = {v["version"]: v for v in provision.http(http_sample("provision_list", tenant_id))[1]["versions"]}
    assert listed[1]["records"] == 0 and listed[2]["records"] == 51

    # and the unreferenced retired version can be destroyed, the active one cannot
    tmk_v1 = base64.b64decode(unwrap(invoke_sample("unwrap_version", tenant_id, version=1))["key_b64"])
    assert provision.http(http_sample("provision_destroy", tenant_id, version=1)) == (204, None)
    status, error = provision.http(http_sample("provision_destroy", tenant_id, version=2))
    assert status == 409 and error["error"]["code"] == "conflict"
    listed = {v["version"]: v for v in provision.http(http_sample("provision_list", tenant_id))[1]["versions"]}
    assert listed[1]["status"] == "destroyed" and listed[1]["destroyed_at"]
    assert unwrap(invoke_sample("unwrap_version", tenant_id, version=1))["error"]["code"] == "not_found"

    # The active key opens what DynamoDB holds, and nothing in DynamoDB is the key in the clear
    tmk_v2 = base64.b64decode(unwrap(invoke_sample("unwrap", tenant_id))["key_b64"])
    item = boto3.client("dynamodb").get_item(
        TableName=TABLES["TenantDataTable"], Key={"tenant_id": {"S": tenant_id}, "name": {"S": "secret-07"}}
    )["Item"]
    assert open_record(tmk_v2, tenant_id, "secret-07", 2, item["ciphertext"]["B"]) == plaintexts["secret-07"]

    # No key material in anything the functions printed, nor in the tables
    out, err = capfd.readouterr()
    captured = out + err + logs.getvalue()
    assert '"audit":{"action":"unwrap"' in logs.getvalue().replace(" ", "")
    assert "audit provision success" in captured and tenant_id in captured  # the audit trail is there
    tables = repr(snapshot_tables(TABLES))
    assert_no_key_material(captured, [MASTER_KEY, tmk_v1, tmk_v2])
    for secret in (MASTER_KEY, tmk_v1, tmk_v2):
        assert repr(secret)[2:-1] not in tables  # raw bytes as boto3 would render them
        assert base64.b64encode(secret).decode() not in tables
