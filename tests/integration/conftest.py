"""Integration tests run against the official DynamoDB Local, started once per session."""

from __future__ import annotations

import os
import uuid

import boto3
import pytest
from dynamodb_local import DynamoDBLocal
from local_tables import create_tables
from testenv import TABLES


@pytest.fixture(scope="session", autouse=True)
def dynamodb_local():
    with DynamoDBLocal() as dynamodb:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.endpoint
        create_tables(boto3.client("dynamodb"), TABLES)
        yield dynamodb


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"
