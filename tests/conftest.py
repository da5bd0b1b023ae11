from __future__ import annotations

import fnmatch
import functools
import os
import socket
from types import SimpleNamespace

import boto3
import botocore.loaders
import pytest
import testenv  # sets the environment before any function module is imported
from dynamodb_local import DynamoDBLocal
from local_tables import create_tables

# Cloud names resolve only where a test's fake serves them (tests/fakes map those first):
# a request that would leave the machine fails at name resolution instead.
CLOUD_NAMES = (
    "*.amazonaws.com",
    "*.aws",
    "*.googleapis.com",
    "*.google.com",
    "*.azure.net",
    "*.azure.com",
    "*.microsoftonline.com",
    "*.microsoft.com",
    "*.windows.net",
)
_resolve = socket.getaddrinfo


def _local_only(host, port, *args, **kwargs):
    name = (host.decode() if isinstance(host, bytes) else str(host or "")).lower().rstrip(".")
    if any(fnmatch.fnmatch(name, pattern) for pattern in CLOUD_NAMES):
        raise socket.gaierror(socket.EAI_NONAME, f"{name} is not reachable from the tests")
    return _resolve(host, port, *args, **kwargs)


socket.getaddrinfo = _local_only

# Every function instance builds its own botocore session, as a cold start does, and each
# session parsed botocore's endpoint rules and service models again: a third of the
# integration tier's time. The tests parse each of those files once (they never change);
# sessions and clients are still built per instance.
_load_botocore_file = botocore.loaders.JSONFileLoader.load_file


@functools.cache
def _parsed_botocore_file(file_path: str):
    return _load_botocore_file(botocore.loaders.JSONFileLoader(), file_path)


botocore.loaders.JSONFileLoader.load_file = lambda _self, file_path: _parsed_botocore_file(file_path)


@pytest.fixture(scope="session")
def dynamodb_local():
    """The official DynamoDB Local, once per session, with the tables of template.yaml.

    DYNAMODB_LOCAL_ENDPOINT names one already running, left running afterwards: a mutation
    run shares one across its hundreds of short sessions instead of starting Java for each.
    """
    running = os.environ.get("DYNAMODB_LOCAL_ENDPOINT")
    if running:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = running
        create_tables(boto3.client("dynamodb"), testenv.TABLES)
        yield SimpleNamespace(endpoint=running)
        return
    with DynamoDBLocal() as dynamodb:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.endpoint
        create_tables(boto3.client("dynamodb"), testenv.TABLES)
        yield dynamodb


@pytest.fixture(scope="session")
def moto_server():
    """moto's server on loopback for the AWS services DynamoDB Local does not cover."""
    from dynamodb_local import free_port
    from fakes.kms_key_states import key_states_enforced
    from moto.server import ThreadedMotoServer

    port = free_port()
    # Every interface, so sam local's containers reach it too (as host.docker.internal).
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=port, verbose=False)
    server.start()
    # KMS refuses a disabled key or one pending deletion, as AWS does, for every test.
    with key_states_enforced():
        yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def queues(moto_server, monkeypatch):
    """The sweeps' queues, the test's own, on moto's SQS; functions built afterwards use them."""
    from deployment import own_queues

    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_server)
    return own_queues(monkeypatch)
