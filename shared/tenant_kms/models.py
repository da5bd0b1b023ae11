"""DynamoDB items, through pynamodb. The tables themselves are declared in template.yaml,
which is the one source of truth for their key schemas (the tests create the tables from it
and check these models against it).

Endpoints are never set here: botocore resolves them from the standard
``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL`` settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    JSONAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from tenant_kms.settings import Settings
from tenant_kms.storage import Backoff, StorageConnection


class SealedTenants(GlobalSecondaryIndex):
    """Sparse: only a sealed tenant's row has ``sealed_at``, so the minute's re-poll reads the
    sealed tenants and nothing else."""

    class Meta:
        index_name = "sealed-tenants"
        projection = KeysOnlyProjection()

    sealed_at = UnicodeAttribute(hash_key=True)


class ActiveKey(MapAttribute):
    """What the hot paths need of the active version, kept on the config row by the
    transaction that makes a version active, so a warm unwrap or record write reads one row.
    Trusted only while its ``version`` equals the row's ``active_version``: a release that
    did not write it leaves it naming an older version, and the version row is read instead."""

    version = NumberAttribute()
    key_uid = UnicodeAttribute()
    provider = UnicodeAttribute()
    usage_rows = NumberAttribute()


class TenantConfig(Model):
    """One row per tenant: the chosen provider config and the tenant's key status."""

    class Meta:
        table_name = "unbound"

    tenant_id = UnicodeAttribute(hash_key=True)
    provider = UnicodeAttribute()
    config = JSONAttribute()
    status = UnicodeAttribute()  # active | sealed | erasing
    active_version = NumberAttribute()
    revision = NumberAttribute()  # bumped by every change; guards read-then-write
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    sealed_reason = UnicodeAttribute(null=True)
    sealed_at = UnicodeAttribute(null=True)
    last_verified_at = UnicodeAttribute(null=True)
    last_verify_error = UnicodeAttribute(null=True)
    active_key = ActiveKey(null=True)
    sealed = SealedTenants()


class KeyVersion(Model):
    """One row per TMK version. The wrapped key is the only copy of the key; deleting it is
    cryptographic erasure of every record the version sealed."""

    class Meta:
        table_name = "unbound"

    tenant_id = UnicodeAttribute(hash_key=True)
    version = NumberAttribute(range_key=True)
    status = UnicodeAttribute()  # active | retired | destroyed
    provider = UnicodeAttribute()
    provider_config = JSONAttribute()  # the config this version was wrapped under
    key_id = UnicodeAttribute()  # resolved id of the wrapping key
    key_uid = UnicodeAttribute()  # random; tells a re-created version apart in caches
    wrapped_key = BinaryAttribute(legacy_encoding=False, null=True)
    # Counted here by writes from before the version had usage rows; since then, in them (usage.py).
    records = NumberAttribute(default=0)  # records sealed under this version
    encryptions = NumberAttribute(default=0)  # records ever sealed under it: the usage budget's count
    usage_rows = NumberAttribute(null=True)  # how many VersionUsage rows count its records
    created_at = UnicodeAttribute()
    retired_at = UnicodeAttribute(null=True)
    destroyed_at = UnicodeAttribute(null=True)
    rewrapped_at = UnicodeAttribute(null=True)  # last moved to its config's current wrapping key


class TenantRecord(Model):
    """A tenant data record, sealed with AES-256-GCM under one TMK version."""

    class Meta:
        table_name = "unbound"

    tenant_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute(range_key=True)
    version = NumberAttribute()
    ciphertext = BinaryAttribute(legacy_encoding=False)
    revision = NumberAttribute()  # bumped by every write; rewrap only replaces what it read
    updated_at = UnicodeAttribute()
    # The rewrap job that moved it here; a caller's write drops it. Lets a job that lost a
    # chunk's count to a crash count those records when it runs the chunk again.
    rewrap_job = UnicodeAttribute(null=True)
    usage_row = NumberAttribute(null=True)  # which of its version's usage rows counts it; none: the version row


class IssuedExternalId(Model):
    """The AWS external id the service issued to one tenant: what the customer's role trust
    demands, so that no other tenant can use that role.

    Kept in the key-version table under a partition of its own (``<tenant>#external-id``,
    version 0; '#' never occurs in a tenant id), so no query of a tenant's versions ever sees
    it, and erasing the tenant deletes it with the versions.
    """

    class Meta:
        table_name = "unbound"

    partition = UnicodeAttribute(hash_key=True, attr_name="tenant_id")
    version = NumberAttribute(range_key=True, default=0)
    external_id = UnicodeAttribute()
    issued_at = UnicodeAttribute()

    @staticmethod
    def partition_of(tenant_id: str) -> str:
        return f"{tenant_id}#external-id"


class VersionUsage(Model):
    """One of a key version's usage rows: a share of its counts, so that concurrent writes of
    one tenant each update a row of their own (usage.py).

    Kept in the key-version table under a partition of its own per tenant (``<tenant>#usage``;
    '#' never occurs in a tenant id), sort key ``version * USAGE_SLOTS + row``, so no query
    of a tenant's versions sees them, and erasing the tenant deletes them with the versions.
    """

    class Meta:
        table_name = "unbound"

    partition = UnicodeAttribute(hash_key=True, attr_name="tenant_id")
    slot = NumberAttribute(range_key=True, attr_name="version")
    key_uid = UnicodeAttribute()  # the version's: a row of an erased and re-created version never counts
    records = NumberAttribute(default=0)
    encryptions = NumberAttribute(default=0)
    closed_at = UnicodeAttribute(null=True)  # set when the version retires: no write seals under it any more

    @staticmethod
    def partition_of(tenant_id: str) -> str:
        return f"{tenant_id}#usage"


class Job(Model):
    """A tenant's job (a rewrap, or the purge of an erased tenant's records): progress,
    cursor, and the lease of the worker moving it."""

    class Meta:
        table_name = "unbound"

    tenant_id = UnicodeAttribute(hash_key=True)
    job_id = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()  # rewrap | purge
    status = UnicodeAttribute()  # running | succeeded | failed
    actor = UnicodeAttribute()
    cursor = UnicodeAttribute(null=True)  # last record name a finished batch examined
    migrated = NumberAttribute(default=0)
    skipped = NumberAttribute(default=0)
    remaining = NumberAttribute(null=True)
    started_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    finished_at = UnicodeAttribute(null=True)
    error = JSONAttribute(null=True)
    next_at = NumberAttribute(default=0)  # epoch seconds before which no batch runs (the rate)
    lease_owner = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)  # epoch seconds; past it another worker takes over
    expires_at = NumberAttribute(null=True)  # TTL of a finished job's row


class RunningJob(Model):
    """The one running job of a kind for a tenant: its slot row in the job table (range key
    ``running#<kind>``, never a job id), written only if absent, so two starts make one job."""

    class Meta:
        table_name = "unbound"

    tenant_id = UnicodeAttribute(hash_key=True)
    slot = UnicodeAttribute(range_key=True, attr_name="job_id")
    current = UnicodeAttribute()  # the running job's id

    @staticmethod
    def slot_of(kind: str) -> str:
        return f"running#{kind}"


# The sweeps' own rows share the sweep table under a partition no tenant id can name ('#').
SWEEP_RUNS = "#sweeps"


class SweepRun(Model):
    """Where one sweep (re-verify, re-poll, ...) stands: the scan position after the last page
    whose units were sent, and what its visits added up to."""

    class Meta:
        table_name = "unbound"

    partition = UnicodeAttribute(hash_key=True, attr_name="tenant_id", default=SWEEP_RUNS)
    sweep = UnicodeAttribute(range_key=True)
    sweep_id = UnicodeAttribute()  # ordered by start: a later sweep's id sorts after
    status = UnicodeAttribute()  # paging | paged
    position = UnicodeAttribute(null=True)  # the scan's last evaluated key, as JSON
    pages = NumberAttribute(default=0)  # bumped with every page: guards two runs advancing at once
    sent = NumberAttribute(default=0)  # units of the pages recorded here, each tenant once
    visited = NumberAttribute(default=0)
    totals = MapAttribute(default=dict)  # what the visits reported, summed
    started_at = UnicodeAttribute()
    paged_at = UnicodeAttribute(null=True)


class SweepVisit(Model):
    """A tenant's visit by a sweep: claimed by one unit, then done. The next sweep's id
    replaces it; a unit of an older sweep than the one recorded does nothing."""

    class Meta:
        table_name = "unbound"

    tenant_id = UnicodeAttribute(hash_key=True)
    sweep = UnicodeAttribute(range_key=True)
    sweep_id = UnicodeAttribute()
    state = UnicodeAttribute()  # claimed | done
    claim = UnicodeAttribute()  # the unit holding the claim
    lease_until = NumberAttribute()  # epoch seconds; a claim past it was lost with its worker
    visited_at = UnicodeAttribute(null=True)
    outcome = UnicodeAttribute(null=True)  # what the visit found, e.g. active, failed:provider_unavailable
    expires_at = NumberAttribute()  # TTL: a visit of a tenant no longer swept goes by itself


MODELS = (TenantConfig, KeyVersion, TenantRecord)


@dataclass(frozen=True, slots=True)
class ConfigState:
    """What a warm unwrap or record read needs of a tenant's config row, decoded straight from
    the item DynamoDB answered: building a TenantConfig model costs about as much as the rest
    of the call's own work. Changes to the row still go through TenantConfig."""

    tenant_id: str
    provider: str
    status: str
    active_version: int
    sealed_reason: str | None
    active_key: ActiveKeyState | None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ConfigState:
        named = item.get("active_key")
        return cls(
            tenant_id=item["tenant_id"]["S"],
            provider=item["provider"]["S"],
            status=item["status"]["S"],
            active_version=int(item["active_version"]["N"]),
            sealed_reason=item["sealed_reason"]["S"] if "sealed_reason" in item else None,
            active_key=None if named is None else ActiveKeyState.from_item(named["M"]),
        )


@dataclass(frozen=True, slots=True)
class ActiveKeyState:
    """``ActiveKey`` as read by ConfigState."""

    version: int
    key_uid: str
    provider: str
    usage_rows: int

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ActiveKeyState:
        return cls(
            version=int(item["version"]["N"]),
            key_uid=item["key_uid"]["S"],
            provider=item["provider"]["S"],
            usage_rows=int(item["usage_rows"]["N"]),
        )


def config_key(tenant_id: str) -> dict[str, dict[str, str]]:
    return {"tenant_id": {"S": tenant_id}}


def read_config_state(connection: Connection, tenant_id: str) -> ConfigState | None:
    """The tenant's config row as stored now (one consistent GetItem), or None."""
    request = {"TableName": TenantConfig.Meta.table_name, "Key": config_key(tenant_id), "ConsistentRead": True}
    item = connection.dispatch("GetItem", request).get("Item")
    return None if item is None else ConfigState.from_item(item)


def read_items(connection: Connection, *keys: tuple[str, dict[str, dict]]) -> list[dict[str, Any] | None]:
    """The items named by (table, key) as stored now (None: no such item), read consistently
    in one BatchGetItem: one round trip, where reading them one after another takes one each."""
    request: dict[str, dict] = {}
    for table, key in keys:
        request.setdefault(table, {"Keys": [], "ConsistentRead": True})["Keys"].append(key)
    found = connection.dispatch("BatchGetItem", {"RequestItems": request}).get("Responses", {})
    return [
        next((item for item in found.get(table, ()) if all(item.get(n) == v for n, v in key.items())), None)
        for table, key in keys
    ]


def read_state_with(connection: Connection, tenant_id: str, *rows: Model) -> list[Any]:
    """The tenant's ConfigState and ``rows``, as read_rows reads them (None: no such row)."""
    table = TenantConfig.Meta.table_name
    config, *items = read_items(
        connection, (table, config_key(tenant_id)), *((r.Meta.table_name, _raw_key(r)) for r in rows)
    )
    found = [None if item is None else type(row).from_raw_data(item) for row, item in zip(rows, items, strict=True)]
    return [None if config is None else ConfigState.from_item(config), *found]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """What a record read needs of a TenantRecord row, decoded as ConfigState is."""

    version: int
    ciphertext: bytes


def read_state_and_record(connection: Connection, tenant_id: str, name: str) -> tuple[Any, StoredRecord | None]:
    """The tenant's ConfigState (None: no config) and its record ``name``, in one BatchGetItem."""
    config, record = read_items(
        connection,
        (TenantConfig.Meta.table_name, config_key(tenant_id)),
        (TenantRecord.Meta.table_name, {"tenant_id": {"S": tenant_id}, "name": {"S": name}}),
    )
    stored = None if record is None else StoredRecord(int(record["version"]["N"]), record["ciphertext"]["B"])
    return None if config is None else ConfigState.from_item(config), stored


def read_rows(connection: Connection, *rows: Model) -> list[Model | None]:
    """The rows named by ``rows``' keys as stored now (None: no such row), in one BatchGetItem."""
    items = read_items(connection, *((row.Meta.table_name, _raw_key(row)) for row in rows))
    return [None if item is None else type(row).from_raw_data(item) for row, item in zip(rows, items, strict=True)]


def _raw_key(row: Model) -> dict[str, dict[str, str]]:
    serialized = row._get_keys()
    attributes = (type(row)._hash_key_attribute(), type(row)._range_key_attribute())
    return {a.attr_name: {a.attr_type: serialized[a.attr_name]} for a in attributes if a is not None}


def bind_tables(settings: Settings, backoff: Backoff | None = None) -> Connection:
    """Point the models at this deployment's tables, every call through one retry policy;
    returns a connection for transactions."""
    backoff = backoff or Backoff()
    for model, table in (
        (TenantConfig, settings.config_table),
        (KeyVersion, settings.key_version_table),
        (IssuedExternalId, settings.key_version_table),
        (VersionUsage, settings.key_version_table),
        (TenantRecord, settings.tenant_data_table),
        (Job, settings.job_table or "unbound"),
        (RunningJob, settings.job_table or "unbound"),
        (SweepRun, settings.sweep_table or "unbound"),
        (SweepVisit, settings.sweep_table or "unbound"),
    ):
        model.Meta.table_name = table
        model.Meta.region = settings.region
        model._connection = None  # rebuilt for the new table name, then given our connection
        tables = model._get_connection()
        storage = StorageConnection(settings.region, backoff)
        storage.add_meta_table(tables.get_meta_table())
        tables.connection = storage
    return StorageConnection(settings.region, backoff)
