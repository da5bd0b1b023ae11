"""A deployment of a test's own: fresh tables (as template.yaml declares them) and the
settings that name them, so a scheduled run sees this test's tenants and no other's."""

from __future__ import annotations

import base64
import os
import uuid

import boto3
import testenv
from local_tables import create_tables


def own_tables(monkeypatch) -> dict[str, str]:
    """Fresh tables for every table the session has; functions built afterwards use them."""
    suffix = uuid.uuid4().hex[:6]
    names = {logical_id: f"{name}-{suffix}" for logical_id, name in testenv.TABLES.items()}
    create_tables(boto3.client("dynamodb"), names)
    by_session_name = {name: names[logical_id] for logical_id, name in testenv.TABLES.items()}
    for variable, value in list(os.environ.items()):
        if value in by_session_name:
            monkeypatch.setenv(variable, by_session_name[value])
    return names


def deploy_master_keys(monkeypatch, *keys: bytes) -> None:
    """MASTER_KEY_B64 as a deployment would set it: the current key first."""
    monkeypatch.setenv("MASTER_KEY_B64", ",".join(base64.b64encode(key).decode() for key in keys))
