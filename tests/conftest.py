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


@pytest.fixture(scope="session")
def moto_server():
    """moto's server on loopback for the AWS services DynamoDB Local does not cover."""
    from dynamodb_local import free_port
    from moto.server import ThreadedMotoServer

    port = free_port()
    # Every interface, so sam local's containers reach it too (as host.docker.internal).
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
