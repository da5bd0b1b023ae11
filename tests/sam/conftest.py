from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _dynamodb(dynamodb_local):
    return dynamodb_local
