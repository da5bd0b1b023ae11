"""Runs Tenant KMS on this machine with its embedded defaults: the global wrap with a
fresh random master key, DynamoDB Local in memory, the admin API on 127.0.0.1:3000.

State lives only as long as this process. No Docker, no cloud account.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import signal
import threading
from typing import Any

import boto3
from dynamodb_local import DynamoDBLocal
from local_tables import create_tables, load_template

LOCAL_TABLES = {
    "TenantConfigTable": "tenant-kms-configs",
    "KeyVersionTable": "tenant-kms-key-versions",
    "TenantDataTable": "tenant-kms-tenant-data",
}


def template_environment(template: dict[str, Any], tables: dict[str, str]) -> dict[str, str]:
    """The functions' environment as template.yaml declares it, parameters at their defaults."""
    parameters = template.get("Parameters", {})

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            if ref in tables:
                return tables[ref]
            parameter = parameters[ref]
            default = str(parameter.get("Default", ""))
            return [p for p in default.split(",") if p] if parameter["Type"] == "CommaDelimitedList" else default
        if isinstance(value, dict) and "Fn::Join" in value:
            separator, items = value["Fn::Join"]
            resolved = resolve(items)
            return separator.join(resolved if isinstance(resolved, list) else [resolve(i) for i in items])
        return value

    return {
        name: str(resolve(value)) for name, value in template["Globals"]["Function"]["Environment"]["Variables"].items()
    }


def configure_environment(endpoint: str, tables: dict[str, str]) -> None:
    env = template_environment(load_template(), tables)
    env.update(
        AWS_ENDPOINT_URL_DYNAMODB=endpoint,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        MASTER_KEY_B64=os.environ.get("MASTER_KEY_B64") or base64.b64encode(secrets.token_bytes(32)).decode(),
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="true",
    )
    os.environ.update(env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()

    dynamodb = DynamoDBLocal().start()
    configure_environment(dynamodb.endpoint, LOCAL_TABLES)
    create_tables(boto3.client("dynamodb"), LOCAL_TABLES)

    from local_gateway import Gateway, serve

    serve(Gateway(), port=args.port)
    print(
        f"Tenant KMS admin API on http://127.0.0.1:{args.port} (global wrap, DynamoDB Local at "
        f"{dynamodb.endpoint}, in memory).",
        flush=True,
    )
    print(
        "Pass claims with the dev-only header: X-Local-Claims: "
        '{"sub":"alice","tenant_id":"acme","scope":"tenant-kms/admin"}',
        flush=True,
    )
    print("Direct invoke: POST /2015-03-31/functions/UnwrapFunction/invocations", flush=True)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    while not stopped.wait(0.5):  # a timed wait keeps the main thread responsive to signals
        pass
    dynamodb.stop()
    os._exit(0)  # the gateway's threads hold nothing worth a graceful close


if __name__ == "__main__":
    main()
