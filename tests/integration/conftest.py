"""Integration tests run the real handlers against the official DynamoDB Local."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(autouse=True)
def _dynamodb(dynamodb_local):
    return dynamodb_local


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"
