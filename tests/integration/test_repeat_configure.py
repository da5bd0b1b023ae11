"""An identical configure (provider and config as stored) re-verifies and provisions
nothing: rotation is POST …/keys."""

from __future__ import annotations

import time

import boto3
from support import Clock, Function, http_sample, key_versions, read_record
from test_sealing import sealed_by_the_active_version
from testenv import TABLES


def test_an_identical_configure_reverifies_and_provisions_nothing(tenant_id):
    # Given a configured tenant whose last verification had failed
    configure = Function("configure")
    configure.service.clock = clock = Clock(time.time())
    first = configure.http(http_sample("configure_put_global", tenant_id))[1]
    boto3.client("dynamodb").update_item(
        TableName=TABLES["TenantConfigTable"],
        Key={"tenant_id": {"S": tenant_id}},
        UpdateExpression="SET last_verify_error = :e",
        ExpressionAttributeValues={":e": {"S": "global: an earlier probe failed"}},
    )

    # When its admin sends the same configure again, later
    clock.advance(60)
    status, view = configure.http(http_sample("configure_put_global", tenant_id))

    # Then it was probed and recorded, and the version is the same one
    assert status == 200, view
    assert view["active_version"] == 1 and view["status"] == "active"
    assert view["last_verified_at"] > first["last_verified_at"] and view["last_verify_error"] is None
    assert [(v["version"], v["status"]) for v in key_versions(tenant_id)] == [(1, "active")]


def test_an_identical_configure_unseals_when_the_active_version_unwraps_again(tenant_id):
    # Given a tenant sealed by its active version, whose provider then accepts it again
    _, intact = sealed_by_the_active_version(tenant_id)
    boto3.client("dynamodb").put_item(TableName=TABLES["KeyVersionTable"], Item=intact)

    # When its admin sends the current config again
    status, view = Function("configure").http(http_sample("configure_put_global", tenant_id))

    # Then the seal is lifted with no new version
    assert status == 200, view
    assert (view["status"], view["active_version"], view["sealed_reason"]) == ("active", 2, None)
    assert [v["version"] for v in key_versions(tenant_id)] == [1, 2]
    assert read_record(Function("tenant_data"), tenant_id, "c") == (b"c", 2)


def test_an_identical_configure_of_a_sealed_tenant_whose_active_version_stays_refused_provisions_once(tenant_id):
    # Given a tenant sealed by an active version the provider keeps refusing
    sealed_by_the_active_version(tenant_id)
    configure = Function("configure")

    # When its admin sends the current config (which probes fine) twice
    first = configure.http(http_sample("configure_put_global", tenant_id))
    second = configure.http(http_sample("configure_put_global", tenant_id))

    # Then the first one is the way out (a new version), the second provisions nothing
    assert first[0] == 200 and (first[1]["status"], first[1]["active_version"]) == ("active", 3)
    assert second[0] == 200 and second[1]["active_version"] == 3
    assert [v["version"] for v in key_versions(tenant_id)] == [1, 2, 3]
