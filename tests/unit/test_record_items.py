"""A rewrap writes and reads records as raw DynamoDB items, not through the TenantRecord
model: the items must be exactly what the model writes and reads, or a moved record would
no longer read (or count) the way a caller's write leaves it."""

from __future__ import annotations

from tenant_kms.models import KeyVersion, TenantRecord
from tenant_kms.records import StoredRecord, _moved_item

NOW = "2026-11-29T12:00:00.000Z"


def test_a_moved_record_is_the_item_the_model_writes():
    """Catches an attribute missed, renamed or typed differently in the raw put."""
    active = KeyVersion("acme", 3)
    stored = StoredRecord("db-password", 2, 7, 5, None, b"old")
    for job_id in (None, "0f" * 16):
        put = _moved_item(active, stored, b"\x01new", 11, job_id, NOW)
        model = TenantRecord(
            "acme",
            "db-password",
            version=3,
            ciphertext=b"\x01new",
            revision=8,
            updated_at=NOW,
            rewrap_job=job_id,
            usage_row=11,
        )
        assert put["Item"] == model.serialize()
        assert put["TableName"] == TenantRecord.Meta.table_name


def test_the_move_replaces_only_the_record_as_read():
    """Catches a put whose condition no longer names the revision and version read."""
    put = _moved_item(KeyVersion("acme", 3), StoredRecord("n", 2, 7, None, None, b""), b"", 0, None, NOW)
    names, values = put["ExpressionAttributeNames"], put["ExpressionAttributeValues"]
    clauses = {tuple(clause.split(" = ")) for clause in put["ConditionExpression"].split(" AND ")}
    assert {(names[name], values[value]["N"]) for name, value in clauses} == {("revision", "7"), ("version", "2")}


def test_a_stored_record_reads_what_the_model_wrote():
    """Catches a field read from the wrong attribute, or an absent optional one misread."""
    counted = TenantRecord(
        "acme", "a", version=2, ciphertext=b"c", revision=4, updated_at=NOW, rewrap_job="j", usage_row=0
    )
    assert StoredRecord.of(counted.serialize()) == StoredRecord("a", 2, 4, 0, "j", b"c")
    before_usage_rows = TenantRecord("acme", "b", version=1, ciphertext=b"d", revision=1, updated_at=NOW)
    assert StoredRecord.of(before_usage_rows.serialize()) == StoredRecord("b", 1, 1, None, None, b"d")
