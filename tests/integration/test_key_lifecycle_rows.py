"""The key lifecycle straight through TenantKms, built from the environment as every function
builds it, against DynamoDB Local: what each step leaves in the tables, field by field. Quick
(no handler imports), so `make mutate` runs it for every mutant of the lifecycle."""

from __future__ import annotations

import base64
import json
import os

import boto3
import pytest
from support import Clock, emf_metrics, partition_items, purge_job, snapshot_tables, structured_logs
from testenv import MASTER_KEY, TABLES

from kms_wrapping import ProviderRegistry
from kms_wrapping import ProviderUnavailable as SecretUnavailable
from kms_wrapping.global_wrap import GlobalKeyWrapper, master_key_id
from tenant_kms.errors import Conflict, NotFound, ProviderUnavailable, Sealed, VerificationFailed
from tenant_kms.identity import issue_external_id, issued_external_id
from tenant_kms.jobs import RewrapJobs
from tenant_kms.observability import metrics
from tenant_kms.records import TenantRecords
from tenant_kms.service import TenantKms, iso
from tenant_kms.settings import Settings
from tenant_kms.unsealing import Unsealing

OTHER_MASTER_KEY = bytes(range(32))


def service(clock: Clock, *master_keys: bytes) -> TenantKms:
    """An instance as deployed; ``master_keys``: another ring than the session's."""
    env = dict(os.environ)
    if master_keys:
        env["MASTER_KEY_B64"] = ",".join(base64.b64encode(key).decode() for key in master_keys)
    return TenantKms(Settings.from_env(env), clock=clock)


def unreachable_secret(clock: Clock, message: str = "the master key secret could not be read") -> TenantKms:
    """An instance whose global wrap cannot read its master key secret (an outage, not a refusal)."""

    def no_answer(_force: bool):
        raise SecretUnavailable(message)

    registry = ProviderRegistry()
    registry.register("global", lambda _config, _tenant_id: GlobalKeyWrapper(master_keys=no_answer))
    return TenantKms(Settings.from_env(), registry=registry, clock=clock)


def overtaken(clock: Clock, meanwhile, *, then_unreachable: bool = False, ring: bytes = MASTER_KEY) -> TenantKms:
    """An instance whose global wrap runs ``meanwhile`` (another instance's step) the first time
    it asks for its master keys, as the probe does: a change landing while the probe runs.
    ``then_unreachable``: after it, the master key secret cannot be read (the probe fails);
    ``ring``: the one master key it then holds."""
    pending = [meanwhile]

    def keys(_force: bool):
        while pending:
            pending.pop()()
        if then_unreachable:
            raise SecretUnavailable("the master key secret could not be read")
        return (ring,)

    registry = ProviderRegistry()
    registry.register("global", lambda _config, _tenant_id: GlobalKeyWrapper(master_keys=keys))
    return TenantKms(Settings.from_env(), registry=registry, clock=clock)


def audit_entries(logs: str, action: str) -> list[dict]:
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    return [line["audit"] for line in lines if line.get("audit", {}).get("action") == action]


def config_row(tenant_id: str) -> dict:
    item = boto3.client("dynamodb").get_item(
        TableName=TABLES["TenantConfigTable"], Key={"tenant_id": {"S": tenant_id}}, ConsistentRead=True
    )
    return item.get("Item", {})


def version_rows(tenant_id: str) -> dict[int, dict]:
    return {int(item["version"]["N"]): item for item in partition_items(TABLES["KeyVersionTable"], tenant_id)}


def first_key_uid(tenant_id: str) -> dict:
    return version_rows(tenant_id)[1]["key_uid"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_configure_then_provision_leave_exactly_these_rows(tenant_id, clock):
    """Catches a configure or provision writing another status, version, revision, time or
    key id, not retiring the previous version, keeping a retired version active, or a
    provision audited without its actor, tenant, version or provider."""
    kms = service(clock)
    view = kms.configure(tenant_id, "global", {}, actor="alice")
    now = iso(clock.now)
    assert view == {
        "tenant_id": tenant_id,
        "provider": "global",
        "config": {},
        "status": "active",
        "sealed_reason": None,
        "sealed_at": None,
        "active_version": 1,
        "last_verified_at": now,
        "last_verify_error": None,
        "session_ttl_seconds": kms.settings.session_ttl_seconds,
    }
    config = config_row(tenant_id)
    assert {k: v for k, v in config.items() if k != "config"} == {
        "tenant_id": {"S": tenant_id},
        "provider": {"S": "global"},
        "status": {"S": "active"},
        "active_version": {"N": "1"},
        "revision": {"N": "1"},
        "created_at": {"S": now},
        "updated_at": {"S": now},
        "last_verified_at": {"S": now},
        # What a warm unwrap needs of the active version, read with the config in one item.
        "active_key": {
            "M": {
                "version": {"N": "1"},
                "key_uid": first_key_uid(tenant_id),
                "provider": {"S": "global"},
                "usage_rows": {"N": "16"},
            }
        },
    }
    (first,) = version_rows(tenant_id).values()
    assert first["status"] == {"S": "active"} and first["records"] == {"N": "0"}
    assert first["key_id"] == {"S": master_key_id(MASTER_KEY)} and first["created_at"] == {"S": now}
    assert "retired_at" not in first and "destroyed_at" not in first

    clock.advance(60)
    with structured_logs() as logs:
        assert kms.provision(tenant_id, actor="bob") == {"version": 2, "status": "active"}
    (entry,) = audit_entries(logs.getvalue(), "provision")
    assert {k: entry[k] for k in ("action", "actor", "tenant_id", "version", "provider", "outcome")} == {
        "action": "provision",
        "actor": "bob",
        "tenant_id": tenant_id,
        "version": 2,
        "provider": "global",
        "outcome": "success",
    }
    later = iso(clock.now)
    config = config_row(tenant_id)
    assert config["active_version"] == {"N": "2"} and config["revision"] == {"N": "2"}
    assert config["active_key"]["M"]["version"] == {"N": "2"}
    assert config["active_key"]["M"]["key_uid"] == version_rows(tenant_id)[2]["key_uid"]
    assert config["updated_at"] == {"S": later} and config["last_verified_at"] == {"S": now}
    rows = version_rows(tenant_id)
    assert rows[1]["status"] == {"S": "retired"} and rows[1]["retired_at"] == {"S": later}
    assert rows[2]["status"] == {"S": "active"} and rows[2]["created_at"] == {"S": later}
    assert rows[1]["key_uid"] != rows[2]["key_uid"] and rows[1]["wrapped_key"] != rows[2]["wrapped_key"]
    assert [v["version"] for v in kms.list_versions(tenant_id)] == [1, 2]


def test_provisioning_an_unconfigured_tenant_configures_the_global_wrap(tenant_id, clock):
    """Catches a provision of an unconfigured tenant that configures another provider, config
    or tenant, audits no actor, or answers in another shape."""
    kms = service(clock)
    with structured_logs() as logs:
        assert kms.provision(tenant_id, actor="alice") == {"version": 1, "status": "active"}
    config = config_row(tenant_id)
    assert (config["provider"], config["active_version"]) == ({"S": "global"}, {"N": "1"})
    assert kms.config_view(tenant_id)["config"] == {}
    (entry,) = audit_entries(logs.getvalue(), "configure")
    assert (entry["actor"], entry["tenant_id"], entry["provider"], entry["outcome"]) == (
        "alice",
        tenant_id,
        "global",
        "success",
    )


def test_unwrap_answers_the_versions_key_for_its_session_ttl(tenant_id, clock):
    """Catches unwrap answering another version than asked (or than the active one), another
    key, or a TTL / expiry not counted from the unwrap."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    kms.provision(tenant_id, actor="alice")
    ttl = kms.settings.session_ttl_seconds
    cold = service(clock)  # nothing cached: the key comes from the wrapped key in the table
    first = cold.unwrap(tenant_id, 1, actor="app")
    clock.advance(10)
    active = cold.unwrap(tenant_id, None, actor="app")
    assert (first["version"], active["version"]) == (1, 2) and first["key_b64"] != active["key_b64"]
    assert active["ttl_seconds"] == ttl and active["expires_at"] == iso(clock.now + ttl)
    clock.advance(5)
    again = cold.unwrap(tenant_id, 1, actor="app")  # from the session cache
    assert again["key_b64"] == first["key_b64"] and again["ttl_seconds"] == ttl - 15
    assert again["provider"] == "global" and again["tenant_id"] == tenant_id
    assert kms.unwrap(tenant_id, 1, actor="app")["key_b64"] == first["key_b64"]
    with pytest.raises(NotFound):
        cold.unwrap(tenant_id, 3, actor="app")


def test_verify_records_success_and_keeps_the_keys(tenant_id, clock):
    """Catches a verify that changes the keys, or records its outcome with another time."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    clock.advance(30)
    before = version_rows(tenant_id)
    answer = kms.verify(tenant_id, actor="alice")
    assert answer["ok"] is True and answer["last_verify_error"] is None
    assert config_row(tenant_id)["last_verified_at"] == {"S": iso(clock.now)}
    assert config_row(tenant_id)["revision"] == {"N": "1"} and version_rows(tenant_id) == before


def test_a_verify_overtaken_by_a_provision_answers_conflict_and_records_nothing(tenant_id, clock):
    """A provision lands while verify's probe runs: the probe's outcome is about the config it
    read, so it is not written over the newer one. Catches verify's write losing its revision
    condition (a stale success or error recorded on a config nobody probed)."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    clock.advance(30)
    racing = overtaken(clock, lambda: service(clock).provision(tenant_id, actor="bob"))
    with pytest.raises(Conflict, match="changed during verification"):
        racing.verify(tenant_id, actor="carol")
    config = config_row(tenant_id)
    assert config["revision"] == {"N": "2"} and config["active_version"] == {"N": "2"}
    assert config["last_verified_at"] == {"S": iso(clock.now - 30)}


def erased(kms: TenantKms, tenant_id: str) -> None:
    """The whole erasure, as the route and its purge job run it."""
    jobs = RewrapJobs(TenantRecords(kms))
    jobs.erase(tenant_id, actor="dpo")
    purge = purge_job(tenant_id)
    for _ in range(10):
        if purge["status"] != "running":
            break
        purge = jobs.advance(tenant_id, purge["job_id"])
    assert purge["status"] == "succeeded"


def test_an_identical_configure_overtaken_by_a_provision_answers_conflict_and_records_nothing(tenant_id, clock):
    """Catches the re-verification of an identical configure written without its revision
    condition: its probe was of the config it read, not of the one a provision left."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    clock.advance(30)
    racing = overtaken(clock, lambda: service(clock).provision(tenant_id, actor="bob"))
    with pytest.raises(Conflict, match="changed during verification"):
        racing.configure(tenant_id, "global", {}, actor="carol")
    config = config_row(tenant_id)
    assert config["revision"] == {"N": "2"} and config["last_verified_at"] == {"S": iso(clock.now - 30)}


def test_a_failed_probe_after_an_erasure_meanwhile_leaves_no_config_row(tenant_id, clock):
    """The tenant is erased while a configure's probe runs, and the probe fails: its error has
    no config left to annotate. Catches the error's write losing its row-exists condition (it
    would bring back a config row holding only the error, for a tenant that was erased)."""
    service(clock).configure(tenant_id, "global", {}, actor="alice")
    racing = overtaken(clock, lambda: erased(service(clock), tenant_id), then_unreachable=True)
    with pytest.raises(ProviderUnavailable):
        racing.configure(tenant_id, "global", {}, actor="bob")
    assert config_row(tenant_id) == {} and version_rows(tenant_id) == {}


def test_a_master_key_dropped_from_the_ring_seals_on_open_and_only_the_ring_that_has_it_unseals(tenant_id, clock):
    """Catches a refusal that does not seal, a seal without reason or time, a sealed tenant
    still served (from the cache or the provider), and an unseal that lifts the seal while
    the active version is still refused, or refuses when it unwraps."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    dropped = service(clock, OTHER_MASTER_KEY)  # an instance whose ring lost the key
    clock.advance(5)
    with pytest.raises(Sealed):
        dropped.unwrap(tenant_id, None, actor="app")
    config = config_row(tenant_id)
    assert config["status"] == {"S": "sealed"} and config["sealed_at"] == {"S": iso(clock.now)}
    assert "global refused to unwrap version 1" in config["sealed_reason"]["S"]
    with pytest.raises(Sealed):
        kms.unwrap(tenant_id, None, actor="app")  # cached here, but sealed is sealed
    sealed = snapshot_tables(TABLES)
    with structured_logs() as logs:
        with pytest.raises(VerificationFailed):
            Unsealing(dropped).unseal(tenant_id, actor="alice")
        assert snapshot_tables(TABLES) == sealed
        view = Unsealing(kms).unseal(tenant_id, actor="bob")
    entry = {"action": "unseal", "tenant_id": tenant_id, "version": 1, "provider": "global"}
    assert [{k: e.get(k) for k in (*entry, "actor", "outcome")} for e in audit_entries(logs.getvalue(), "unseal")] == [
        {**entry, "actor": "alice", "outcome": "verification_failed"},
        {**entry, "actor": "bob", "outcome": "success"},
    ]
    assert (view["status"], view["sealed_reason"], view["sealed_at"]) == ("active", None, None)
    assert "sealed_reason" not in config_row(tenant_id) and "sealed_at" not in config_row(tenant_id)
    assert kms.unwrap(tenant_id, None, actor="app")["version"] == 1
    with pytest.raises(Conflict, match="not sealed"):
        Unsealing(kms).unseal(tenant_id, actor="alice")


def test_an_unseal_overtaken_by_an_erasure_answers_conflict_and_leaves_the_tenant_erasing(tenant_id, clock):
    """The tenant's erasure begins while an unseal unwraps its active version: the unseal was
    of the sealed config it read. Catches the unseal's write losing its condition (it would
    mark an erasing tenant active again)."""
    service(clock).configure(tenant_id, "global", {}, actor="alice")
    with pytest.raises(Sealed):
        service(clock, OTHER_MASTER_KEY).unwrap(tenant_id, None, actor="app")
    racing = overtaken(clock, lambda: service(clock).erase_keys(tenant_id, actor="dpo"))
    with pytest.raises(Conflict, match="changed while unsealing"):
        Unsealing(racing).unseal(tenant_id, actor="alice")
    assert config_row(tenant_id)["status"] == {"S": "erasing"}


def test_a_refusal_overtaken_by_an_erasure_seals_nothing_and_leaves_the_tenant_erasing(tenant_id, clock):
    """The tenant's erasure begins while an unwrap that the provider then refuses runs: the seal
    is for the active tenant that was read. Catches the seal's write losing its condition (it
    would mark an erasing tenant sealed)."""
    service(clock).configure(tenant_id, "global", {}, actor="alice")
    meanwhile = lambda: service(clock).erase_keys(tenant_id, actor="dpo")  # noqa: E731
    with pytest.raises(Sealed):
        overtaken(clock, meanwhile, ring=OTHER_MASTER_KEY).unwrap(tenant_id, None, actor="app")
    assert config_row(tenant_id)["status"] == {"S": "erasing"}


def test_of_two_unseals_at_once_one_lifts_the_seal_and_the_other_answers_conflict(tenant_id, clock):
    """Catches an unseal whose write is not conditioned on the seal it checked: the second
    would answer success (and count a second unseal) for a seal already lifted."""
    service(clock).configure(tenant_id, "global", {}, actor="alice")
    with pytest.raises(Sealed):
        service(clock, OTHER_MASTER_KEY).unwrap(tenant_id, None, actor="app")
    racing = overtaken(clock, lambda: Unsealing(service(clock)).unseal(tenant_id, actor="bob"))
    with pytest.raises(Conflict, match="changed while unsealing"):
        Unsealing(racing).unseal(tenant_id, actor="alice")
    assert config_row(tenant_id)["status"] == {"S": "active"}


def test_an_identical_configure_of_a_sealed_tenant_unseals_its_version_or_provisions_one(tenant_id, clock):
    """Catches an identical configure that leaves a tenant sealed although its active version
    unwraps again, provisions a version it does not need, or (the active version still
    refused while the config probes fine) leaves the tenant sealed instead of provisioning."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    dropped = service(clock, OTHER_MASTER_KEY)  # probes fine, but cannot unwrap version 1
    with pytest.raises(Sealed):
        dropped.unwrap(tenant_id, None, actor="app")
    clock.advance(30)
    view = kms.configure(tenant_id, "global", {}, actor="alice")
    assert (view["status"], view["active_version"], view["sealed_reason"]) == ("active", 1, None)
    assert view["last_verified_at"] == iso(clock.now) and set(version_rows(tenant_id)) == {1}
    with pytest.raises(Sealed):
        dropped.unwrap(tenant_id, None, actor="app")
    view = dropped.configure(tenant_id, "global", {}, actor="alice")
    assert (view["status"], view["active_version"], view["sealed_reason"]) == ("active", 2, None)
    rows = version_rows(tenant_id)
    assert rows[1]["status"] == {"S": "retired"} and rows[2]["key_id"] == {"S": master_key_id(OTHER_MASTER_KEY)}


def test_an_unreachable_master_key_source_is_unavailable_and_never_seals(tenant_id, clock):
    """Catches a provider fault taken for a refusal: the tenant must stay active."""
    service(clock).configure(tenant_id, "global", {}, actor="alice")
    before = snapshot_tables(TABLES)
    with pytest.raises(ProviderUnavailable):
        unreachable_secret(clock).unwrap(tenant_id, None, actor="app")
    assert snapshot_tables(TABLES) == before


def test_a_verify_the_provider_does_not_answer_records_its_error_and_keeps_the_keys(tenant_id, clock):
    """Catches a failed verify answered or recorded as a success, its error lost or cut
    elsewhere than 500 characters, the last success time or the keys changed, and audit
    entries that do not name the operation, actor, tenant, provider and outcome."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    verified_at = iso(clock.now)
    clock.advance(30)
    versions = version_rows(tenant_id)
    with structured_logs() as logs:
        answer = unreachable_secret(clock, "x" * 600).verify(tenant_id, actor="bob")
        error = f"global: {'x' * 600}"[:500]
        assert config_row(tenant_id)["last_verify_error"] == {"S": error}
        assert config_row(tenant_id)["last_verified_at"] == {"S": verified_at}
        kms.verify(tenant_id, actor="carol")
    assert answer == {"ok": False, "last_verified_at": verified_at, "last_verify_error": error}
    failed, passed = audit_entries(logs.getvalue(), "verify")
    assert failed == {
        "action": "verify",
        "actor": "bob",
        "tenant_id": tenant_id,
        "version": None,
        "provider": "global",
        "outcome": "verification_failed",
    }
    assert passed == {**failed, "actor": "carol", "outcome": "success"}
    # The success after it cleared the error and recorded its own time; nothing else moved.
    config = config_row(tenant_id)
    assert config["last_verified_at"] == {"S": iso(clock.now)} and "last_verify_error" not in config
    assert config["revision"] == {"N": "1"} and version_rows(tenant_id) == versions


def test_a_configure_whose_probe_fails_records_its_error_cut_at_500_characters(tenant_id, clock):
    """Catches the error of a configure's failed probe lost, or cut elsewhere than 500
    characters, on the config it leaves as it was."""
    service(clock).configure(tenant_id, "global", {}, actor="alice")
    with pytest.raises(ProviderUnavailable):
        unreachable_secret(clock, "y" * 600).configure(tenant_id, "global", {}, actor="bob")
    assert config_row(tenant_id)["last_verify_error"] == {"S": f"global: {'y' * 600}"[:500]}


def test_destroy_erases_only_a_retired_version_without_records(tenant_id, clock):
    """Catches destroy of an active version, of a version still sealing records, a destroyed
    version keeping its wrapped key or another time, a repeated destroy failing, and audit
    entries that do not name the operation, actor, tenant, version, provider and outcome."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    with structured_logs() as logs:
        with pytest.raises(Conflict, match="is active"):
            kms.destroy_version(tenant_id, 1, actor="alice")
        kms.provision(tenant_id, actor="alice")
        clock.advance(60)
        uids = {v: row["key_uid"]["S"] for v, row in version_rows(tenant_id).items()}
        kms.destroy_version(tenant_id, 1, actor="bob")
        # The erased key leaves this instance's memory too; the active one stays.
        assert kms.cache.get((tenant_id, 1, uids[1])) is None and kms.cache.get((tenant_id, 2, uids[2]))
        destroyed = version_rows(tenant_id)[1]
        assert destroyed["status"] == {"S": "destroyed"} and destroyed["destroyed_at"] == {"S": iso(clock.now)}
        assert "wrapped_key" not in destroyed
        after = snapshot_tables(TABLES)
        kms.destroy_version(tenant_id, 1, actor="carol")  # already destroyed: nothing to do
        assert snapshot_tables(TABLES) == after
        with pytest.raises(NotFound):
            kms.unwrap(tenant_id, 1, actor="app")
        with pytest.raises(NotFound, match=f"tenant {tenant_id} has no key version 7"):
            kms.destroy_version(tenant_id, 7, actor="alice")
    entry = {"action": "destroy_version", "tenant_id": tenant_id, "version": 1, "provider": "global"}
    assert [
        {k: e.get(k) for k in (*entry, "actor", "outcome")} for e in audit_entries(logs.getvalue(), "destroy_version")
    ] == [
        {**entry, "actor": "alice", "outcome": "conflict"},
        {**entry, "actor": "bob", "outcome": "success"},
        {**entry, "actor": "carol", "outcome": "already_destroyed"},
        {**entry, "version": 7, "provider": None, "actor": "alice", "outcome": "not_found"},
    ]


def test_erase_leaves_no_row_and_audits_who_erased_which_tenant(tenant_id, clock):
    """Catches an erase that leaves a config, version or usage row behind, or whose audit
    entry does not name the operation, the actor and the tenant."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    kms.provision(tenant_id, actor="alice")
    with structured_logs() as logs:
        erased(kms, tenant_id)
    assert config_row(tenant_id) == {} and version_rows(tenant_id) == {}
    assert partition_items(TABLES["KeyVersionTable"], f"{tenant_id}#usage") == []  # the versions' usage rows
    (entry,) = audit_entries(logs.getvalue(), "erase")
    assert entry == {
        "action": "erase",
        "actor": "dpo",
        "tenant_id": tenant_id,
        "version": None,
        "provider": None,
        "outcome": "success",
        "records": "purge_job",
    }
    with pytest.raises(NotFound):
        kms.unwrap(tenant_id, None, actor="app")


def test_an_erasure_taken_up_after_one_cut_between_its_batches_deletes_the_usage_rows_left(tenant_id, clock):
    """A version's row and its usage rows go in batches of 25: an erasure cut short after the
    batch holding the version rows leaves only usage rows. Catches the next erasure stopping
    when it finds no version row (the usage rows would stay forever)."""
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    kms.provision(tenant_id, actor="alice")
    client = boto3.client("dynamodb")
    for version in version_rows(tenant_id):
        client.delete_item(
            TableName=TABLES["KeyVersionTable"],
            Key={"tenant_id": {"S": tenant_id}, "version": {"N": str(version)}},
        )
    assert partition_items(TABLES["KeyVersionTable"], f"{tenant_id}#usage")
    kms.erase_keys(tenant_id, actor="dpo")
    assert partition_items(TABLES["KeyVersionTable"], f"{tenant_id}#usage") == []


def record_rows(tenant_id: str) -> dict[str, dict]:
    return {item["name"]["S"]: item for item in partition_items(TABLES["TenantDataTable"], tenant_id)}


def test_deleting_a_record_removes_it_and_its_count_and_nothing_else(tenant_id, clock):
    """Catches a delete that leaves the record, removes another one, does not count it off its
    own version (destroy would wait for it forever), or answers otherwise; and a delete of a
    record that is not there that is not 404 or changes a row."""
    kms = service(clock)
    records = TenantRecords(kms)
    kms.configure(tenant_id, "global", {}, actor="alice")
    records.put_record(tenant_id, "a", b"1", actor="app")
    kms.provision(tenant_id, actor="alice")
    records.put_record(tenant_id, "b", b"2", actor="app")
    records.put_record(tenant_id, "c", b"3", actor="app")
    assert {v["version"]: v["records"] for v in kms.list_versions(tenant_id)} == {1: 1, 2: 2}
    with pytest.raises(Conflict, match="key version 1 still seals 1 records"):
        kms.destroy_version(tenant_id, 1, actor="alice")
    with structured_logs() as logs:
        assert records.delete_record(tenant_id, "a", actor="app") == {"name": "a", "deleted": True}
        assert records.delete_record(tenant_id, "b", actor="app") == {"name": "b", "deleted": True}
    assert set(record_rows(tenant_id)) == {"c"}
    assert {v["version"]: v["records"] for v in kms.list_versions(tenant_id)} == {1: 0, 2: 1}
    deleted = [
        (e["actor"], e["tenant_id"], e["version"], e["record"], e["outcome"])
        for e in audit_entries(logs.getvalue(), "delete_record")
    ]
    assert deleted == [("app", tenant_id, 1, "a", "success"), ("app", tenant_id, 2, "b", "success")]
    before = snapshot_tables(TABLES)
    with pytest.raises(NotFound, match='has no record "a"'):
        records.delete_record(tenant_id, "a", actor="app")
    assert snapshot_tables(TABLES) == before
    kms.destroy_version(tenant_id, 1, actor="alice")  # its last record is gone: it may go


def test_erasing_a_tenant_that_only_holds_an_issued_external_id_forgets_it_and_nothing_is_404(tenant_id, clock):
    """Catches an erase that answers 404 for a tenant whose only trace is the external id its
    onboarding issued (it would stay issued), or that erases a tenant that never existed."""
    jobs = RewrapJobs(TenantRecords(service(clock)))
    issue_external_id(tenant_id, iso(clock.now))
    with structured_logs() as logs:
        jobs.erase(tenant_id, actor="dpo")
    assert issued_external_id(tenant_id) is None
    (entry,) = audit_entries(logs.getvalue(), "erase")
    assert (entry["tenant_id"], entry["outcome"], entry["records"]) == (tenant_id, "success", "none")
    before = snapshot_tables(TABLES)
    with pytest.raises(NotFound, match="does not exist"):
        jobs.erase(tenant_id, actor="dpo")
    assert snapshot_tables(TABLES) == before


def flushed(capsys) -> dict[str, list[float]]:
    """The metrics counted since the last flush, as a handler's log_metrics ships them."""
    capsys.readouterr()
    metrics.flush_metrics(raise_on_empty_metrics=False)
    return emf_metrics(capsys.readouterr().out)


def test_each_step_counts_the_metrics_the_readme_lists(tenant_id, clock, capsys):
    """Catches a metric of the README's list renamed, not counted, or counted on another step:
    provisions, cache hits and misses, seals, unseals, verification failures, provider faults
    and erasures."""
    metrics.clear_metrics()
    kms = service(clock)
    kms.configure(tenant_id, "global", {}, actor="alice")
    step = flushed(capsys)
    assert step.keys() == {"KeyVersionsProvisioned", "ProviderLatency"}
    assert step["KeyVersionsProvisioned"] == [1.0]
    kms.unwrap(tenant_id, None, actor="app")
    assert flushed(capsys) == {"SessionCacheHits": [1.0]}
    dropped = service(clock, OTHER_MASTER_KEY)
    with pytest.raises(Sealed):
        dropped.unwrap(tenant_id, None, actor="app")
    step = flushed(capsys)
    assert step.keys() == {"SessionCacheMisses", "ProviderLatency", "TenantsSealed"}
    assert (step["SessionCacheMisses"], step["TenantsSealed"]) == ([1.0], [1.0])
    Unsealing(service(clock)).unseal(tenant_id, actor="alice")
    assert flushed(capsys).keys() == {"ProviderLatency", "TenantsUnsealed"}
    with pytest.raises(ProviderUnavailable):
        unreachable_secret(clock).unwrap(tenant_id, None, actor="app")
    step = flushed(capsys)
    assert step.keys() == {"SessionCacheMisses", "ProviderLatency", "ProviderUnavailable"}
    assert step["ProviderUnavailable"] == [1.0]
    unreachable_secret(clock).verify(tenant_id, actor="bob")
    assert flushed(capsys) == {"VerificationFailures": [1.0]}
    kms.erase_keys(tenant_id, actor="dpo")
    assert flushed(capsys) == {"TenantsErased": [1.0]}
