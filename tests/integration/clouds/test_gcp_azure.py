"""GCP Cloud KMS, operator and BYOK, through the real SDK client; a migration across clouds.

Key Vault has its own tests (test_azure.py)."""

from __future__ import annotations

import os

import google_crc32c
import pytest
from fakes import cloud_kms
from support import Clock, b64, http_sample, invoke_sample, run_rewrap, snapshot_tables, step_up
from support import read_record as read
from testenv import TABLES

from kms_wrapping import WrapContext

PROVIDERS = ["customer_kms_gcp", "operator_kms_gcp"]


def configure(clouds, tenant_id, provider, config=None):
    config = clouds.config(provider, tenant_id) if config is None else config
    body = {"provider": provider, "config": config}
    return clouds.function("configure").http(http_sample("configure_put_global", tenant_id, body=body))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_configure_provision_unwrap_and_data_round_trip(clouds, tenant_id, provider):
    status, view = configure(clouds, tenant_id, provider)
    assert status == 200, view
    ttl = 300 if provider.startswith("customer") else 3600
    assert view["provider"] == provider and view["session_ttl_seconds"] == ttl and view["last_verified_at"]
    assert clouds.function("provision").http(http_sample("provision_post", tenant_id))[0] == 201

    versions = clouds.function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]
    assert all("/cryptoKeyVersions/1" in v["key_id"] for v in versions)

    unwrap, data = clouds.function("unwrap"), clouds.function("tenant_data")
    unwrapped = unwrap(invoke_sample("unwrap", tenant_id))
    assert unwrapped["version"] == 2 and unwrapped["provider"] == provider and unwrapped["ttl_seconds"] <= ttl
    assert data(invoke_sample("tenant_data_put", tenant_id, name="s", value_b64=b64(b"secret")))["version"] == 2
    assert read(data, tenant_id, "s") == (b"secret", 2)

    binding = WrapContext(tenant_id, 2)
    requests = [r for r in clouds.cloud_kms.calls("Decrypt") if r.additional_authenticated_data == binding.aad()]
    assert requests, "Cloud KMS never saw this tenant's and version's AAD"
    for request in requests:
        assert request.ciphertext_crc32c == google_crc32c.value(request.ciphertext)
        assert request.additional_authenticated_data_crc32c == google_crc32c.value(binding.aad())
    encrypts = [r for r in clouds.cloud_kms.calls("Encrypt") if r.additional_authenticated_data == binding.aad()]
    assert encrypts and all(r.plaintext_crc32c == google_crc32c.value(r.plaintext) for r in encrypts)
    # Reached as deployed: Google's host name on 443, over TLS verified against the test CA.
    assert set(clouds.gcp.proxy.tunnels) == {f"{cloud_kms.HOST}:443"}


@pytest.mark.parametrize("provider", ["customer_kms_gcp"])
def test_disabling_the_key_seals_after_the_ttl_and_enabling_unseals(clouds, tenant_id, provider):
    config = clouds.config(provider, tenant_id)
    assert configure(clouds, tenant_id, provider, config)[0] == 200
    data = clouds.function("tenant_data")
    clock = Clock()
    data.service.clock = clock
    assert data(invoke_sample("tenant_data_put", tenant_id, name="s", value_b64=b64(b"v")))["version"] == 1

    def disable(enabled: bool) -> None:
        clouds.cloud_kms.set_state(config["key_name"], 1, "ENABLED" if enabled else "DISABLED")

    disable(False)
    clock.now += 299
    assert read(data, tenant_id, "s") == (b"v", 1)  # from the session cache
    clock.now += 2
    assert read(data, tenant_id, "s") == "sealed"
    view = clouds.function("configure").http(http_sample("configure_get", tenant_id))[1]
    assert view["status"] == "sealed" and "FailedPrecondition" in view["sealed_reason"]

    disable(True)
    assert read(data, tenant_id, "s") == "sealed"  # until the active version unwraps again
    assert clouds.function("verify").http(step_up(http_sample("verify_unseal", tenant_id)))[0] == 200
    assert read(data, tenant_id, "s") == (b"v", 1)
    assert clouds.function("configure").http(http_sample("configure_get", tenant_id))[1]["status"] == "active"


@pytest.mark.parametrize("fault", ["ciphertext_crc", "flip_ciphertext", "unverified"])
def test_gcp_wrap_integrity_faults_are_detected_and_nothing_is_stored(clouds, tenant_id, fault):
    config = clouds.config("customer_kms_gcp", tenant_id)
    before = snapshot_tables(TABLES)
    clouds.cloud_kms.fail_always(fault)
    try:
        status, body = configure(clouds, tenant_id, "customer_kms_gcp", config)
    finally:
        clouds.cloud_kms.fail_always(None)
    assert (status, body["error"]["code"]) == (503, "provider_unavailable")
    assert "checksums did not verify" in body["error"]["message"]
    assert snapshot_tables(TABLES) == before


@pytest.mark.parametrize("fault", ["plaintext_crc", "flip_plaintext"])
def test_gcp_unwrap_integrity_faults_never_return_or_cache_a_wrong_key(clouds, tenant_id, fault):
    assert configure(clouds, tenant_id, "customer_kms_gcp")[0] == 200
    genuine = clouds.function("unwrap")(invoke_sample("unwrap", tenant_id))["key_b64"]
    unwrap = clouds.function("unwrap")
    before = len(clouds.cloud_kms.calls("Decrypt"))

    clouds.cloud_kms.fail_next(2, fault)  # two damaged answers, then a good one: retried
    assert unwrap(invoke_sample("unwrap", tenant_id))["key_b64"] == genuine
    assert len(clouds.cloud_kms.calls("Decrypt")) - before == 3

    fresh = clouds.function("unwrap")
    clouds.cloud_kms.fail_always(fault)  # damaged every time: an error, not a key
    try:
        answer = fresh(invoke_sample("unwrap", tenant_id))
    finally:
        clouds.cloud_kms.fail_always(None)
    assert answer["error"]["code"] == "provider_unavailable" and "key_b64" not in answer
    calls = len(clouds.cloud_kms.calls("Decrypt"))
    assert fresh(invoke_sample("unwrap", tenant_id))["key_b64"] == genuine
    assert len(clouds.cloud_kms.calls("Decrypt")) == calls + 1  # nothing was cached from the damaged answers
    view = clouds.function("configure").http(http_sample("configure_get", tenant_id))[1]
    assert view["status"] == "active"


def test_gcp_unavailable_is_retried_then_provider_unavailable(clouds, tenant_id):
    """Catches: UNAVAILABLE not retried, retried past the deployment's KMS_MAX_ATTEMPTS (4 by
    default), or sealing the tenant or writing anything when it persists."""
    assert configure(clouds, tenant_id, "customer_kms_gcp")[0] == 200
    unwrap = clouds.function("unwrap")
    attempts = unwrap.service.settings.kms_max_attempts
    decrypts = len(clouds.cloud_kms.calls("Decrypt"))
    clouds.cloud_kms.fail_next(attempts - 1, "unavailable")
    assert "key_b64" in unwrap(invoke_sample("unwrap", tenant_id))
    assert len(clouds.cloud_kms.calls("Decrypt")) - decrypts == attempts

    before, decrypts = snapshot_tables(TABLES), len(clouds.cloud_kms.calls("Decrypt"))
    clouds.cloud_kms.fail_always("unavailable")
    try:
        answer = clouds.function("unwrap")(invoke_sample("unwrap", tenant_id))
    finally:
        clouds.cloud_kms.fail_always(None)
    assert answer["error"]["code"] == "provider_unavailable"
    assert len(clouds.cloud_kms.calls("Decrypt")) - decrypts == attempts
    assert snapshot_tables(TABLES) == before
    view = clouds.function("configure").http(http_sample("configure_get", tenant_id))[1]
    assert view["status"] == "active"


def test_cross_cloud_migration_keeps_every_record(clouds, tenant_id):
    assert configure(clouds, tenant_id, "global", {})[0] == 200
    values = {f"r{i:02d}": os.urandom(16) for i in range(20)}
    data = clouds.function("tenant_data")
    for name, value in values.items():
        assert data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))["version"] == 1

    for version, provider in ((2, "customer_kms_gcp"), (3, "customer_kms_azure")):
        status, view = configure(clouds, tenant_id, provider)
        assert status == 200 and view["active_version"] == version
        job = run_rewrap(tenant_id, clouds.function("rewrap"))
        assert (job["status"], job["migrated"], job["remaining"]) == ("succeeded", 20, 0)
        reader = clouds.function("tenant_data")
        assert all(read(reader, tenant_id, n) == (v, version) for n, v in values.items())

    provision = clouds.function("provision")
    for retired in (1, 2):
        assert provision.http(http_sample("provision_destroy", tenant_id, version=retired))[0] == 204
    statuses = [
        (v["version"], v["provider"], v["status"])
        for v in provision.http(http_sample("provision_list", tenant_id))[1]["versions"]
    ]
    assert statuses == [
        (1, "global", "destroyed"),
        (2, "customer_kms_gcp", "destroyed"),
        (3, "customer_kms_azure", "active"),
    ]
