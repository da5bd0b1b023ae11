"""Every function runs from the `sam build` artifact in a Lambda container through `sam local`.

`sam local start-lambda` on the built template, as deployed, runs each function with each of
its sample events from events/, in the order of a tenant's lifecycle, against DynamoDB Local on
the host. Its containers stay warm, as a warm Lambda serves its next events: each function's
container starts once per test, not once per event. `sam local invoke` runs the README's one
sample as written there, in a container of its own. `sam local start-api` and
`sam local start-lambda` serve the README's curl sequence from the local template
(local/sam_local.py: LocalClaimsAuthorizer in place of the JWT authorizer, which sam local does
not run). The container image comes from local/lambda_image.py (the official Lambda image when
present, otherwise a stand-in built locally): no image is ever pulled. Without a usable Docker
they fail as root (CI installs and starts Docker itself) and are skipped, saying why, anywhere
else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import testenv
from dynamodb_local import DynamoDBLocal, free_port
from local_queues import QUEUE_SETTINGS, EventSource, create_queues, lambda_event
from local_tables import create_tables
from moto.core.authorization import enable_iam_authentication
from run_local import invoke_through
from sam_local import (
    SamLocal,
    containers_on,
    network_of,
    stop,
    wait_listening,
    write_env_vars,
    write_local_template,
)
from support import (
    EVENTS,
    assert_no_key_material,
    fresh_sample,
    http_sample,
    job_unit,
    purge_job,
    run_readme_block,
    snapshot_tables,
)

from tenant_kms.models import SWEEP_RUNS

pytestmark = pytest.mark.sam

README_API_URL = "http://127.0.0.1:3000"
README_INVOKE_URL = "http://127.0.0.1:3001"
ADMIN = {"sub": "alice", "tenant_id": "acme", "scope": "tenant-kms/admin"}


@dataclass(frozen=True)
class Stack:
    deployed: SamLocal  # the built template, as it deploys: JWT authorizer, ADMIN_AUTHORIZER=jwt
    local: SamLocal  # the local template: LocalClaimsAuthorizer, ADMIN_AUTHORIZER=lambda
    dynamodb: Any  # a boto3 client of the DynamoDB Local the containers use
    queues: dict[str, str]  # the sweeps' queues on moto, by logical id
    sqs: Any  # a boto3 client of moto's SQS
    logs: list[str] = field(default_factory=list)  # the functions' logs from every `sam local` run

    def units(self, queue: str) -> Path:
        """The units waiting in the queue, as the event file Lambda's event source would send."""
        url = self.queues[queue]
        messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        event = self.deployed.build_dir.parent / "events" / f"{queue}-units.json"
        event.parent.mkdir(exist_ok=True)
        event.write_text(json.dumps(lambda_event(messages, f"arn:aws:sqs:us-east-1:123456789012:{queue}", "us-east-1")))
        return event

    def clear(self) -> None:
        """No tenants at all, as the README's sequence and the lifecycle below start, and no
        unit an earlier test left waiting on a queue."""
        for url in self.queues.values():
            self.drain(url)
        for name in testenv.TABLES.values():
            keys = [k["AttributeName"] for k in self.dynamodb.describe_table(TableName=name)["Table"]["KeySchema"]]
            for item in self.dynamodb.scan(TableName=name)["Items"]:
                self.dynamodb.delete_item(TableName=name, Key={k: item[k] for k in keys})

    def snapshot(self) -> dict[str, list]:
        return snapshot_tables(testenv.TABLES, self.dynamodb)

    def drain(self, url: str) -> None:
        # Received and deleted rather than purged: SQS (moto too) refuses a second purge within 60 s.
        while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)


@pytest.fixture(scope="module")
def container_dynamodb() -> Iterator[tuple[DynamoDBLocal, Any]]:
    """DynamoDB Local of its own: the scheduled jobs see only this module's tenants, and the
    sample events' tenant `acme` is not shared with other tests. DynamoDB Local listens on
    every interface (it is given only a port), so containers reach it via the host gateway."""
    with DynamoDBLocal() as dynamodb:
        client = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint)
        create_tables(client, testenv.TABLES)
        yield dynamodb, client


@dataclass(frozen=True)
class AwsAccounts:
    """moto's AWS, as the AWS samples in events/ expect it (the function's IAM user, the
    operator's key, the customer's key under its alias, and the customer's role).

    KMS grants name "*": moto's IAM enforcement does not match KMS key ARNs as resources (AWS
    does; template.yaml scopes the function's own grant to the operator key, and the IAM test
    checks that), as in tests/integration/aws."""

    endpoint: str  # moto on the host, as the tests reach it
    credentials: tuple[str, str]  # the function's IAM user
    operator_key_arn: str
    customer_key_arn: str
    customer_role: str
    customer_policy: dict
    function_user_arn: str

    @property
    def endpoint_port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def trust(self, external_id: str) -> None:
        """The customer's trust, once the tenant's onboarding answer named its issued external id."""
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1")
        iam.update_assume_role_policy(
            RoleName=self.customer_role, PolicyDocument=json.dumps(trust(self.function_user_arn, external_id))
        )

    def pull_grant(self) -> None:
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1")
        iam.delete_role_policy(RoleName=self.customer_role, PolicyName="tenant-kms-key")


@pytest.fixture(scope="module")
def aws_accounts(moto_server) -> AwsAccounts:
    sample = json.loads(json.loads((EVENTS / "configure_put_customer_aws.json").read_text())["body"])["config"]
    endpoint = {"endpoint_url": moto_server, "region_name": "us-east-1"}
    kms, iam = boto3.client("kms", **endpoint), boto3.client("iam", **endpoint)
    operator_key = kms.create_key(Description="operator wrap key")["KeyMetadata"]["Arn"]
    customer_key = kms.create_key(Description="globex TMK wrap")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=sample["key_arn"].split(":", 5)[5], TargetKeyId=customer_key)

    user = iam.create_user(UserName="tenant-kms-sam-local")["User"]
    iam.put_user_policy(
        UserName="tenant-kms-sam-local",
        PolicyName="function-role",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": sample["role_arn"]},
                    {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"},
                    {"Effect": "Allow", "Action": "sqs:SendMessage*", "Resource": "*"},  # SAM's SQSSendMessagePolicy
                ],
            }
        ),
    )
    keys = iam.create_access_key(UserName="tenant-kms-sam-local")["AccessKey"]
    role = sample["role_arn"].rsplit("/", 1)[1]
    # Until the tenant's onboarding answer names the issued external id, the role trusts none.
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust(user["Arn"], "not-issued-yet")))
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}],
    }
    iam.put_role_policy(RoleName=role, PolicyName="tenant-kms-key", PolicyDocument=json.dumps(policy))
    return AwsAccounts(
        endpoint=moto_server,
        credentials=(keys["AccessKeyId"], keys["SecretAccessKey"]),
        operator_key_arn=operator_key,
        customer_key_arn=customer_key,
        customer_role=role,
        customer_policy=policy,
        function_user_arn=user["Arn"],
    )


def trust(principal: str, external_id: str) -> dict:
    # moto matches user principals, not the account root; the condition is the real check. Local
    # runs have no key-wrapping role: the function's own identity is the principal.
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": principal},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }


@pytest.fixture(scope="module")
def stack(invoke_image, container_dynamodb, aws_accounts, sam_build) -> Stack:
    dynamodb, client = container_dynamodb
    build_dir = sam_build
    sqs = boto3.client("sqs", endpoint_url=aws_accounts.endpoint, region_name="us-east-1")
    queues = create_queues(sqs, "sam-local")
    env_vars = write_env_vars(
        build_dir.parent / "env-vars.json",
        tables=testenv.TABLES,
        master_key_b64=base64.b64encode(testenv.MASTER_KEY).decode(),
        dynamodb_port=dynamodb.port,
        extra={
            "AWS_ENDPOINT_URL_KMS": f"http://host.docker.internal:{aws_accounts.endpoint_port}",
            "AWS_ENDPOINT_URL_STS": f"http://host.docker.internal:{aws_accounts.endpoint_port}",
            "OPERATOR_KMS_KEY_ARN": aws_accounts.operator_key_arn,
            "AWS_ENDPOINT_URL_SQS": f"http://host.docker.internal:{aws_accounts.endpoint_port}",
            **{setting: queues[logical_id] for logical_id, setting in QUEUE_SETTINGS.items()},
        },
    )
    credentials = aws_accounts.credentials  # DynamoDB Local accepts any
    return Stack(
        deployed=SamLocal(build_dir / "template.yaml", invoke_image, env_vars, credentials),
        local=SamLocal(write_local_template(build_dir), invoke_image, env_vars, credentials),
        dynamodb=client,
        queues=queues,
        sqs=sqs,
    )


def event_file(stack: Stack, event_name: str | Path) -> Path:
    """A sample event (its login made fresh) written for sam, or an event file as it is."""
    if isinstance(event_name, Path):
        return event_name
    event = stack.deployed.build_dir.parent / "events" / f"{event_name}.json"
    event.parent.mkdir(exist_ok=True)
    event.write_text(json.dumps(fresh_sample(event_name)))
    return event


def sam_local_invoke(stack: Stack, function: str, event_name: str | Path) -> dict[str, Any]:
    """`sam local invoke` of one function (built template) with one sample event (or an event
    file), in a container of its own, as the README runs one by hand; its answer."""
    result = stack.deployed.invoke(function, event_file(stack, event_name))
    stack.logs.append(result.stderr)  # the answer is on stdout, the logs on stderr
    logs = result.stderr[-4000:]
    assert result.returncode == 0, logs
    assert f"Mounting {stack.deployed.build_dir / function} as /var/task" in result.stderr, logs
    lines = result.stdout.strip().splitlines()
    assert lines, logs
    answer = json.loads(lines[-1])
    assert "errorMessage" not in answer, logs
    return answer


@dataclass(frozen=True)
class StartLambda:
    """The built template's functions behind `sam local start-lambda` (see `invoking`)."""

    stack: Stack
    url: str
    log: Path

    def __call__(self, function: str, event_name: str | Path) -> dict[str, Any]:
        """One function with one sample event (or an event file); its answer."""
        payload = event_file(self.stack, event_name).read_bytes()
        url = f"{self.url}/2015-03-31/functions/{function}/invocations"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, payload, method="POST"), timeout=300) as answer:
                status, failed, body = answer.status, answer.headers.get("X-Amz-Function-Error"), answer.read()
        except urllib.error.HTTPError as refused:
            status, failed, body = refused.code, refused.headers.get("X-Amz-Function-Error"), refused.read()
        logs = self.log.read_text()
        assert (status, failed) == (200, None), body.decode(errors="replace") + logs[-4000:]
        assert f"Mounting {self.stack.deployed.build_dir / function} as /var/task" in logs, logs[-4000:]
        answer = json.loads(body)
        assert "errorMessage" not in answer, logs[-4000:]
        return answer


@contextlib.contextmanager
def invoking(stack: Stack) -> Iterator[StartLambda]:
    """`sam local start-lambda` on the built template for one test. Its logs join ``stack.logs``
    once it has stopped, so every line the functions printed is there."""
    with serving(stack.deployed, "start-lambda") as url:
        log = server_log(stack.deployed, "start-lambda", int(url.rsplit(":", 1)[1]))
        yield StartLambda(stack, url, log)
    stack.logs.append(log.read_text())


def http(answer: dict[str, Any]) -> tuple[int, Any]:
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


def test_every_function_runs_in_a_lambda_container_with_each_sample_event(stack):
    stack.clear()
    with invoking(stack) as call:
        unwrapped, retired = lifecycle(stack, call)

    # The functions' logs as sam local shows them: audit events, and no key in any encoding.
    logs = "\n".join(stack.logs)
    assert '"message":"audit unwrap success"' in logs
    keys = [testenv.MASTER_KEY, base64.b64decode(unwrapped["key_b64"]), base64.b64decode(retired["key_b64"])]
    assert_no_key_material(logs, keys)


def lifecycle(stack: Stack, call: StartLambda) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each sample event in a tenant's lifecycle order; the two unwrap answers."""
    status, view = http(call("ConfigureFunction", "configure_put_global"))
    assert (status, view["tenant_id"], view["provider"], view["active_version"]) == (200, "acme", "global", 1)
    status, view = http(call("ConfigureFunction", "configure_get"))
    assert (status, view["status"], view["active_version"]) == (200, "active", 1)
    assert view["last_verified_at"] and view["last_verify_error"] is None

    assert call("TenantDataFunction", "tenant_data_put") == {"name": "db-admin-password", "version": 1}
    assert http(call("ProvisionFunction", "provision_post")) == (201, {"version": 2, "status": "active"})
    status, listed = http(call("ProvisionFunction", "provision_list"))
    assert status == 200
    assert [(v["version"], v["status"], v["records"]) for v in listed["versions"]] == [
        (1, "retired", 1),
        (2, "active", 0),
    ]

    unwrapped = sam_local_invoke(stack, "UnwrapFunction", "unwrap")  # the README's command
    assert (unwrapped["tenant_id"], unwrapped["version"], unwrapped["provider"]) == ("acme", 2, "global")
    assert len(base64.b64decode(unwrapped["key_b64"])) == 32 and 3500 < unwrapped["ttl_seconds"] <= 3600
    retired = call("UnwrapFunction", "unwrap_version")
    assert retired["version"] == 1 and retired["key_b64"] != unwrapped["key_b64"]

    status, verified = http(call("VerifyFunction", "verify_post"))
    assert (status, verified["ok"], verified["last_verify_error"]) == (200, True, None)
    # The re-verify sweep sends acme's unit, and the function visits it as the event source hands it over
    scheduled = call("VerifyFunction", "verify_scheduled")
    assert (scheduled["sweep"], scheduled["status"], scheduled["sent"]) == ("reverify", "paged", 1)
    assert call("VerifyFunction", stack.units("ReverifyQueue")) == {"batchItemFailures": []}
    visits = stack.dynamodb.scan(TableName=testenv.TABLES["SweepTable"])["Items"]
    assert {(v["tenant_id"]["S"], v.get("outcome", {}).get("S")) for v in visits} >= {("acme", "verified")}
    assert call("VerifyFunction", "verify_reverify_units") == {"batchItemFailures": []}
    repolled = call("VerifyFunction", "verify_repoll_sealed")  # nobody is sealed
    assert (repolled["sweep"], repolled["status"], repolled["sent"]) == ("repoll_sealed", "paged", 0)
    assert call("VerifyFunction", "verify_repoll_units") == {"batchItemFailures": []}

    status, job = http(call("RewrapFunction", "rewrap_post"))
    assert (status, job["status"], job["migrated"], job["remaining"]) == (202, "running", 0, 1)  # a job, nothing moved
    # The schedule's two sweeps send acme's units; the function visits them as the event source
    # hands them over: the rewrap finds acme's job running, acme's two versions are on the current key
    scheduled = call("RewrapFunction", "rewrap_scheduled")
    assert {name: (s["status"], s["sent"]) for name, s in scheduled.items()} == {
        "rewrap": ("paged", 1),
        "rewrap_wrapping_keys": ("paged", 1),
    }
    assert call("RewrapFunction", stack.units("RewrapSweepQueue")) == {"batchItemFailures": []}
    visits = stack.dynamodb.scan(TableName=testenv.TABLES["SweepTable"])["Items"]
    outcomes = {v["sweep"]["S"]: v.get("outcome", {}).get("S") for v in visits if v["tenant_id"]["S"] == "acme"}
    assert (outcomes["rewrap"], outcomes["rewrap_wrapping_keys"]) == ("job_running", "checked,current")
    assert call("RewrapFunction", "rewrap_sweep_units") == {"batchItemFailures": []}  # older: nothing
    # and the job's unit, from the job queue, moves acme's record
    assert call("RewrapFunction", stack.units("RewrapJobQueue")) == {"batchItemFailures": []}
    # The operator's re-wrap starts a new sweep (the last one is finished)
    operator = call("RewrapFunction", "rewrap_wrapping_keys")
    assert (operator["sweep"], operator["status"], operator["sent"], operator["resumed"]) == (
        "rewrap_wrapping_keys",
        "paged",
        1,
        False,
    )

    assert call("TenantDataFunction", "tenant_data_get") == {
        "name": "db-admin-password",
        "value_b64": "aHVudGVyMg==",
        "version": 2,
    }
    assert call("TenantDataFunction", "tenant_data_delete") == {"name": "db-admin-password", "deleted": True}

    assert http(call("ProvisionFunction", "provision_destroy")) == (204, None)
    # A retried provision (same Idempotency-Key) answers its first answer: records in DynamoDB Local
    created = http(call("ProvisionFunction", "provision_post_idempotent"))
    assert created == (201, {"version": 3, "status": "active"})
    assert http(call("ProvisionFunction", "provision_post_idempotent")) == created
    assert http(call("EraseFunction", "erase_delete")) == (204, None)
    assert call("UnwrapFunction", "unwrap")["error"]["code"] == "conflict"  # being erased
    # Its records are purged by a job, whose unit RewrapFunction runs
    unit = stack.deployed.build_dir.parent / "events" / "purge_unit.json"
    unit.write_text(json.dumps(job_unit(purge_job("acme", stack.dynamodb))))
    assert call("RewrapFunction", unit)["status"] == "succeeded"
    assert call("UnwrapFunction", "unwrap")["error"]["code"] == "not_found"
    # Only the stored answer outlives the tenant, until it expires (24 h), and the sweeps' own
    # positions, which name no tenant: no key, no record, no job, no visit of it
    idempotency, sweeps = testenv.TABLES["IdempotencyTable"], testenv.TABLES["SweepTable"]
    left = stack.snapshot()
    assert {name: items for name, items in left.items() if items and name not in (idempotency, sweeps)} == {}
    assert {item["tenant_id"]["S"] for item in left[sweeps]} == {SWEEP_RUNS}
    assert [item["status"]["S"] for item in left[idempotency]] == ["COMPLETED"]

    return unwrapped, retired


def test_aws_flows_run_in_lambda_containers_against_moto_with_iam_enforced(stack, aws_accounts):
    """customer_kms_aws (STS AssumeRole with the tenant's issued external id, then KMS in the
    customer's account) and operator_kms_aws (the function's own identity), from the built
    artifact in containers."""
    stack.clear()
    # globex's admin asks what its customer must trust (the sample asks for acme)
    with invoking(stack) as call:
        event = stack.deployed.build_dir.parent / "onboarding-globex.json"
        event.write_text(json.dumps(http_sample("configure_onboarding_get", "globex")))
        status, onboarding = http(call("ConfigureFunction", event))
        assert status == 200 and onboarding["tenant_id"] == "globex", onboarding
        aws_accounts.trust(onboarding["aws"]["external_id"])
        with enable_iam_authentication():
            status, view = http(call("ConfigureFunction", "configure_put_customer_aws"))
            assert status == 200, view
            assert (status, view["provider"], view["status"], view["active_version"]) == (
                200,
                "customer_kms_aws",
                "active",
                1,
            )
            assert view["last_verify_error"] is None and view["session_ttl_seconds"] <= 300

            unwrapped = call("UnwrapFunction", "unwrap_customer_aws")
            assert (unwrapped["tenant_id"], unwrapped["version"], unwrapped["provider"]) == (
                "globex",
                1,
                "customer_kms_aws",
            )
            assert len(base64.b64decode(unwrapped["key_b64"])) == 32 and 0 < unwrapped["ttl_seconds"] <= 300

            status, view = http(call("ConfigureFunction", "configure_put_operator_aws"))
            assert status == 200, view
            assert (view["provider"], view["active_version"]) == ("operator_kms_aws", 1)

        versions = {
            item["tenant_id"]["S"]: item
            for item in stack.dynamodb.scan(TableName=testenv.TABLES["KeyVersionTable"])["Items"]
        }
        assert versions["globex"]["key_id"]["S"] == aws_accounts.customer_key_arn  # the alias, resolved
        assert versions["initech"]["key_id"]["S"] == aws_accounts.operator_key_arn
        kms = boto3.client("kms", endpoint_url=aws_accounts.endpoint, region_name="us-east-1")
        wrapped = versions["globex"]["wrapped_key"]["B"]
        bound = {"tenant_id": "globex", "tmk_version": "1", "purpose": "tenant-master-key"}
        assert kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=bound)["Plaintext"] == base64.b64decode(
            unwrapped["key_b64"]
        )

        # The customer pulls the grant: re-configuring probes first, is refused, and changes no key.
        aws_accounts.pull_grant()
        before = stack.snapshot()[testenv.TABLES["KeyVersionTable"]]
        with enable_iam_authentication():
            status, refused = http(call("ConfigureFunction", "configure_put_customer_aws"))
        assert (status, refused["error"]["code"]) == (422, "verification_failed")
        assert stack.snapshot()[testenv.TABLES["KeyVersionTable"]] == before
    assert_no_key_material("\n".join(stack.logs), [base64.b64decode(unwrapped["key_b64"])])


# ------------------------------------------------------- start-api, start-lambda


def server_log(local: SamLocal, command: str, port: int) -> Path:
    """Where a server's output goes, named by its template: template.local-start-api-<port>.log."""
    return local.build_dir.parent / f"{local.template.stem}-{command}-{port}.log"


@contextlib.contextmanager
def serving(local: SamLocal, command: str) -> Iterator[str]:
    """`sam local start-api` or `start-lambda` on a free port, warm containers; its base URL."""
    port = free_port()
    log = server_log(local, command, port)
    with log.open("w") as out:
        server = local.start(command, port, out)
    try:
        if not wait_listening(port, server, timeout=120):  # a start-up bound, not a speed check
            pytest.fail(f"sam local {command} did not listen: {log.read_text()[-4000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)


INVOKE = "{}/2015-03-31/functions/{}/invocations"  # the Lambda invoke path start-lambda serves


def request(url: str, method: str = "GET", *, claims: Any = None, body: Any = None):
    headers = {"Content-Type": "application/json"}
    if claims is not None:  # the caller logged in just now
        headers["X-Local-Claims"] = json.dumps({**claims, "auth_time": int(time.time())})
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=300) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"null")


def test_start_api_and_start_lambda_serve_the_readme_curl_sequence(stack):
    stack.clear()
    with serving(stack.local, "start-api") as api_url, serving(stack.local, "start-lambda") as invoke_url:
        configured, shown, provisioned, listed = run_readme_block("With `make run` going", {README_API_URL: api_url})
        assert (configured["tenant_id"], configured["provider"], configured["active_version"]) == ("acme", "global", 1)
        assert (shown["status"], shown["active_version"], shown["last_verify_error"]) == ("active", 1, None)
        assert shown["last_verified_at"]
        assert provisioned == {"version": 2, "status": "active"}
        assert [(v["version"], v["status"]) for v in listed["versions"]] == [(1, "retired"), (2, "active")]

        put, unwrapped = run_readme_block("through the Lambda invoke path", {README_INVOKE_URL: invoke_url})
        assert put == {"name": "db-admin-password", "version": 2}
        assert (unwrapped["tenant_id"], unwrapped["version"], unwrapped["provider"]) == ("acme", 2, "global")
        assert len(base64.b64decode(unwrapped["key_b64"])) == 32

        # The rest of the lifecycle through the same API: what the curls wrote is really there.
        assert request(f"{api_url}/tenants/acme/kms/verify", "POST", claims=ADMIN)[1]["ok"] is True
        status, job = request(f"{api_url}/tenants/acme/rewrap", "POST", claims=ADMIN)
        assert (status, job["status"], job["migrated"]) == (202, "running", 0)  # a job: the request moves nothing
        # Its unit of work waits on the job queue: the event source `make run` plays hands it to
        # RewrapFunction through start-lambda's invoke path, as Lambda's mapping would
        jobs = EventSource(
            stack.sqs, stack.queues["RewrapJobQueue"], "RewrapFunction", invoke_through(urlsplit(invoke_url).port)
        )
        assert jobs.poll() == 1
        status, done = request(f"{api_url}/tenants/acme/rewrap/{job['job_id']}", claims=ADMIN)
        assert (status, done["status"], done["remaining"]) == (200, "succeeded", 0)
        assert request(f"{api_url}/tenants/acme/keys/1", "DELETE", claims=ADMIN) == (204, None)
        assert request(f"{api_url}/tenants/acme/keys/2", "DELETE", claims=ADMIN)[0] == 409
        assert request(f"{api_url}/tenants/acme", "DELETE", claims=ADMIN) == (204, None)
        assert purge_job("acme", stack.dynamodb) is not None and jobs.poll() == 1  # the purge, the same way
        assert purge_job("acme", stack.dynamodb) is None
    assert all(items == [] for items in stack.snapshot().values())

    # What start-api and start-lambda printed (the functions' logs included): no key in it.
    logs = "\n".join(log.read_text() for log in stack.local.build_dir.parent.glob("template.local-start-*.log"))
    assert '"message":"audit unwrap success"' in logs
    assert_no_key_material(logs, [testenv.MASTER_KEY, base64.b64decode(unwrapped["key_b64"])])


def test_start_api_refusals_change_nothing(stack):
    """What API Gateway refuses (no claims header) and what the functions refuse (another
    tenant, no admin scope, bad input) leaves the tables as they were. Malformed claims, and
    how both local runners answer them: test_runner_parity.py."""
    stack.clear()
    with serving(stack.local, "start-api") as api_url:
        assert (
            request(f"{api_url}/tenants/acme/kms", "PUT", claims=ADMIN, body={"provider": "global", "config": {}})[0]
            == 200
        )
        before = stack.snapshot()
        kms = f"{api_url}/tenants/acme/kms"
        assert request(kms, "PUT", body={"provider": "global", "config": {}}) == (401, {"message": "Unauthorized"})
        other = {"sub": "mallory", "tenant_id": "other", "scope": "tenant-kms/admin"}
        status, body = request(f"{api_url}/tenants/acme/keys", "POST", claims=other)
        assert (status, body["error"]["code"]) == (403, "forbidden")
        reader = {"sub": "bob", "tenant_id": "acme", "scope": "openid"}
        assert request(f"{api_url}/tenants/acme", "DELETE", claims=reader)[1]["error"]["code"] == "forbidden"
        status, body = request(kms, "PUT", claims=ADMIN, body={"provider": "global", "config": {"x": 1}})
        assert (status, body["error"]["code"]) == (400, "invalid_request")
        status, body = request(f"{api_url}/nowhere", claims=ADMIN)
        assert (status, body["error"]["code"]) == (404, "not_found")
        assert stack.snapshot() == before


def test_deployed_template_under_start_api_trusts_no_local_claims(stack):
    """The built template as deployed: sam local skips its JWT authorizer, so the functions
    (ADMIN_AUTHORIZER=jwt) see no verified claims and refuse; X-Local-Claims means nothing to them."""
    stack.clear()
    with serving(stack.deployed, "start-api") as api_url:
        refused = [
            request(f"{api_url}/tenants/acme/kms", "PUT", claims=ADMIN, body={"provider": "global", "config": {}}),
            request(f"{api_url}/tenants/acme/keys", "POST", claims=ADMIN),
        ]
    unauthorized = {
        "error": {
            "code": "unauthorized",
            "message": "authentication required: send a bearer token from the deployment's issuer",
        }
    }
    assert refused == [(401, unauthorized)] * 2
    assert all(items == [] for items in stack.snapshot().values())


def test_stopping_removes_every_container_it_started_even_when_sam_could_not(stack):
    """`make run RUNNER=sam` and these tests stop sam local through stop(): it removes the
    containers sam left behind, here after sam was killed before it could remove any."""
    port = free_port()
    log = server_log(stack.deployed, "start-lambda", port)
    with log.open("w") as out:
        server = stack.deployed.start("start-lambda", port, out)
    network = network_of(server)
    try:
        assert wait_listening(port, server, timeout=120), log.read_text()[-4000:]  # a start-up bound
        # The first invoke starts the function's warm container: the public one, which reads no table.
        preflight = json.dumps({"requestContext": {"http": {"method": "OPTIONS"}}}).encode()
        url = INVOKE.format(f"http://127.0.0.1:{port}", "FederationFunction")
        with urllib.request.urlopen(urllib.request.Request(url, preflight, method="POST"), timeout=300) as answer:
            assert json.loads(answer.read())["statusCode"] == 204
        assert containers_on(network)
        server.kill()  # sam gets no chance to remove its container
        server.wait(30)
        assert containers_on(network), "sam removed its container after all: this test proves nothing"
    finally:
        stop(server)
    assert containers_on(network) == []
    assert subprocess.run(["docker", "network", "inspect", network], capture_output=True).returncode != 0
