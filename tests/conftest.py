from __future__ import annotations

import os

import boto3
import pytest
import testenv  # sets the environment before any function module is imported
from dynamodb_local import DynamoDBLocal
from local_tables import create_tables


@pytest.fixture(scope="session")
def dynamodb_local():
    """The official DynamoDB Local, once per session, with the tables of template.yaml."""
    with DynamoDBLocal() as dynamodb:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.endpoint
        create_tables(boto3.client("dynamodb"), testenv.TABLES)
        yield dynamodb
