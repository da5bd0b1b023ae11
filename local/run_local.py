"""Runs Tenant KMS on this machine with its embedded defaults: the global wrap with a fresh
random master key, DynamoDB Local in memory, the admin API on 127.0.0.1:3000 and the Lambda
invoke API (the direct-invoke functions) on 127.0.0.1:3001. The job and sweep queues are
moto's SQS, and their event sources are played here (local/local_queues.py): a rewrap job
started by POST …/rewrap runs to its end, a batch every RewrapBatchIntervalSeconds. The
gateway runner also serves KMS, STS and IAM from that moto, IAM enforced, for the README's
local BYOK walkthrough (local/local_aws.py).

Two runners, one behaviour:
- gateway (the default): the in-process gateway (local/local_gateway.py) running the
  handlers from the source tree, up in seconds;
- sam (asked for with --runner sam): the `sam build` artifact in Lambda containers, through
  `sam local start-api` and `sam local start-lambda` (local/sam_local.py); stopping removes
  every container they started.
The first line printed names the runner.
Either way the claims come from the dev-only X-Local-Claims header. State lives only as long
as this process. No cloud account.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import urllib.request
from typing import Any

import boto3
import lambda_image
import sam_local
from build_bundle import ROOT, build
from dynamodb_local import DynamoDBLocal
from local_queues import LocalSqs, start_event_sources
from local_tables import create_tables, load_template

LOCAL_TABLES = {
    "TenantConfigTable": "tenant-kms-configs",
    "KeyVersionTable": "tenant-kms-key-versions",
    "TenantDataTable": "tenant-kms-tenant-data",
    "IdempotencyTable": "tenant-kms-idempotency",
    "JobTable": "tenant-kms-jobs",
    "SweepTable": "tenant-kms-sweeps",
}
RUNNERS = ("gateway", "sam")
CUSTOMER_AWS_FILE = ROOT / ".local" / "customer-aws.json"
LOCAL_BYOK_SESSION_TTL_SECONDS = 1


def template_environment(template: dict[str, Any], tables: dict[str, str]) -> dict[str, str]:
    """The functions' environment as template.yaml declares it, parameters at their defaults (or
    local values where a deployment must choose):
    Globals and every function's own variables (the in-process gateway runs them all in one
    process)."""
    parameters = template.get("Parameters", {})

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            if ref in tables:
                return tables[ref]
            if ref not in parameters:
                # Other resources (the job and sweep queues): their local stand-ins are set apart.
                return ""
            parameter = parameters[ref]
            default = str(parameter.get("Default", sam_local.LOCAL_PARAMETERS.get(ref, "")))
            return [p for p in default.split(",") if p] if parameter["Type"] == "CommaDelimitedList" else default
        if isinstance(value, dict) and "Fn::Join" in value:
            separator, items = value["Fn::Join"]
            resolved = resolve(items)
            return separator.join(resolved if isinstance(resolved, list) else [resolve(i) for i in items])
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            # Deployed-only resources (the key-wrapping role, the federation key): local runs use
            # the function's own credentials and sign nothing.
            return ""
        return value

    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if isinstance(resource, dict) and resource["Type"] == "AWS::Serverless::Function":
            variables.update(((resource["Properties"].get("Environment") or {}).get("Variables")) or {})
    return {name: str(resolve(value)) for name, value in variables.items()}


def configure_environment(
    endpoint: str, tables: dict[str, str], master_key_b64: str, queues: dict[str, str] | None = None
) -> None:
    env = template_environment(load_template(), tables)
    env.update(
        AWS_ENDPOINT_URL_DYNAMODB=endpoint,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        MASTER_KEY_B64=master_key_b64,
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="true",
    )
    env.update(queues or {})  # the queues, and the local AWS identity where there is one
    os.environ.update(env)


class SamRunner:
    """start-api and start-lambda from the `sam build` artifact, in Lambda containers."""

    def __init__(
        self, image: str, dynamodb_port: int, master_key_b64: str, admin_ui_origins: str, queues: dict[str, str]
    ) -> None:
        self.image = image
        self.dynamodb_port = dynamodb_port
        self.master_key_b64 = master_key_b64
        self.admin_ui_origins = admin_ui_origins
        self.queues = queues
        self.processes: list[subprocess.Popen] = []

    def start(self, api_port: int, invoke_port: int) -> None:
        build_dir = ROOT / ".aws-sam" / "build"
        print(f"sam build -> {build_dir} ...", flush=True)
        built = build(build_dir)
        if built.returncode != 0:
            sys.exit(f"sam build failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}")
        local = sam_local.SamLocal(
            template=sam_local.write_local_template(build_dir, self.admin_ui_origins),
            image=self.image,
            env_vars=sam_local.write_env_vars(
                ROOT / ".local" / "sam-env.json",
                tables=LOCAL_TABLES,
                master_key_b64=self.master_key_b64,
                dynamodb_port=self.dynamodb_port,
                extra=self.queues,
            ),
        )
        for command, port in (("start-api", api_port), ("start-lambda", invoke_port)):
            process = local.start(command, port)
            self.processes.append(process)
            if not sam_local.wait_listening(port, process, timeout=180):  # a start-up bound
                self.stop()
                sys.exit(f"sam local {command} did not listen on port {port}")

    def stop(self) -> None:
        for process in self.processes:
            sam_local.stop(process)


def invoke_through(port: int):
    """An event source's invocation through `sam local start-lambda`'s invoke API."""

    def invoke(function: str, event: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations",
            data=json.dumps(event).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=960) as response:  # the longest function timeout, and more
            answer = json.loads(response.read() or b"null")
            if response.headers.get("X-Amz-Function-Error"):
                raise RuntimeError(f"{function} failed: {answer}")
        return answer

    return invoke


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=3000, help="admin API (default 3000)")
    parser.add_argument("--invoke-port", type=int, default=3001, help="Lambda invoke API (default 3001)")
    parser.add_argument("--runner", choices=RUNNERS, default="gateway")
    parser.add_argument(
        "--admin-ui-origins",
        default=os.environ.get("ADMIN_UI_ORIGINS", ""),
        help="origins CORS allows, comma-separated, as AdminUiOrigins deployed (default: none)",
    )
    args = parser.parse_args()

    runner = args.runner
    if runner == "sam":
        print("runner: sam local start-api and start-lambda, Lambda containers (RUNNER=sam)", flush=True)
    else:
        print("runner: the in-process gateway, no containers (RUNNER=sam runs Lambda containers)", flush=True)
    image = ""
    if runner == "sam":
        try:
            image = lambda_image.prepare(report=lambda line: print(line, flush=True))
        except lambda_image.LambdaImageError as error:
            sys.exit(f"runner sam: {error}")

    master_key_b64 = os.environ.get("MASTER_KEY_B64") or base64.b64encode(secrets.token_bytes(32)).decode()
    dynamodb = DynamoDBLocal().start()
    create_tables(
        boto3.client(
            "dynamodb",
            endpoint_url=dynamodb.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        ),
        LOCAL_TABLES,
    )

    # sam local's containers reach it on the host, as they reach DynamoDB Local.
    sqs = LocalSqs(host="0.0.0.0" if runner == "sam" else "127.0.0.1").start()  # noqa: S104
    stopped = threading.Event()
    sam = None
    if runner == "sam":
        queues = sqs.settings(f"http://host.docker.internal:{sqs.port}")
        sam = SamRunner(image, dynamodb.port, master_key_b64, args.admin_ui_origins, queues)
        sam.start(args.port, args.invoke_port)
        invoke = invoke_through(args.invoke_port)
    else:
        import local_aws
        from local_gateway import ADMIN_PAGE, Gateway, serve

        # KMS, STS and IAM on the same moto, IAM enforced: the accounts of the BYOK walkthrough.
        aws = local_aws.setup(sqs.endpoint, CUSTOMER_AWS_FILE)
        configure_environment(dynamodb.endpoint, LOCAL_TABLES, master_key_b64, {**sqs.settings(), **aws})
        os.environ.pop("AWS_SESSION_TOKEN", None)  # the function user's keys are long-term keys
        # The walkthrough sees a pulled grant at its next unwrap, not 300 s later.
        os.environ["BYOK_SESSION_TTL_SECONDS"] = str(LOCAL_BYOK_SESSION_TTL_SECONDS)
        sqs.client = boto3.client(
            "sqs",
            endpoint_url=sqs.endpoint,
            region_name="us-east-1",
            aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"],
        )
        local_aws.enforce()
        gateway = Gateway(admin_ui_origins=args.admin_ui_origins)
        serve(gateway, port=args.port, api="http", admin_page=ADMIN_PAGE)
        serve(gateway, port=args.invoke_port, api="invoke")
        invoke = gateway.invoke
    start_event_sources(sqs.client, sqs.urls, invoke, stopped)
    print(
        f"Tenant KMS admin API on http://127.0.0.1:{args.port}, Lambda invoke API on "
        f"http://127.0.0.1:{args.invoke_port} (global wrap, DynamoDB Local at {dynamodb.endpoint}, in memory; "
        f"job and sweep queues on moto's SQS at {sqs.endpoint}, their event sources played here).",
        flush=True,
    )
    if sam is None:
        print(
            f"AWS KMS, STS and IAM on moto at {sqs.endpoint}, IAM enforced; a customer account's admin keys "
            f"in {CUSTOMER_AWS_FILE.relative_to(ROOT)}.",
            flush=True,
        )
        print(f"Admin page (Settings > Security > Tenant KMS): http://127.0.0.1:{args.port}/admin/", flush=True)
    print(
        "Pass claims with the dev-only header: X-Local-Claims: "
        '{"sub":"alice","tenant_id":"acme","scope":"tenant-kms/admin"}',
        flush=True,
    )

    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    while not stopped.wait(0.5):  # a timed wait keeps the main thread responsive to signals
        pass
    if sam is not None:
        sam.stop()
    sqs.stop()
    dynamodb.stop()
    os._exit(0)  # the gateway's threads hold nothing worth a graceful close


if __name__ == "__main__":
    main()
