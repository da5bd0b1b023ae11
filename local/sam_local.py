"""`sam local` against the `sam build` artifact: the local template, its environment, the commands.

sam local start-api runs no JWT authorizer (it keeps only Lambda authorizers), so the admin
routes would reach the functions with no claims. The local template is the built one with one
difference: AdminApi's authorizer is LocalClaimsAuthorizer (local/claims_authorizer), which
passes the dev-only ``X-Local-Claims`` header on as a Lambda authorizer's context, and the
functions are told to read that context (ADMIN_AUTHORIZER=lambda). template.yaml, and so every
deployment, keeps the JWT authorizer and ADMIN_AUTHORIZER=jwt.

Containers reach DynamoDB Local on the host at host.docker.internal; the image comes from
local/lambda_image.py and is never pulled. Every sam local command runs its containers on a
Docker network of its own, so stopping it removes exactly those, even the ones sam itself
left behind (killed, or interrupted while cleaning up).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import yaml
from build_bundle import ROOT, SAM
from local_gateway import cors_configuration
from local_queues import QUEUE_SETTINGS
from local_tables import TABLE_SETTINGS

LOCAL_AUTHORIZER = "LocalClaimsAuthorizer"
AUTHORIZER_CODE = Path(__file__).resolve().parent / "claims_authorizer"
CLAIMS_HEADER = "X-Local-Claims"
# Values for the parameters a deployment must choose (template.yaml gives them no default).
# Local runs read none of them: MASTER_KEY_B64 wins over the secret, and the JWT authorizer
# is replaced (sam local) or played by the gateway.
LOCAL_PARAMETERS = {
    "MasterKeySecretArn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:tenant-kms-local",
    "JwtIssuer": "https://issuer.local.invalid",
    "JwtAudience": "tenant-kms-local",
}


def write_local_template(build_dir: Path, admin_ui_origins: str = "") -> Path:
    """The built template with LocalClaimsAuthorizer in place of the JWT authorizer, next to it
    (the functions' CodeUri are relative to the build directory), and AdminApi's CORS as
    deployed with AdminUiOrigins = ``admin_ui_origins``."""
    template = yaml.safe_load((build_dir / "template.yaml").read_text())  # sam build writes no short tags
    resources = template["Resources"]
    cors = cors_configuration(template, admin_ui_origins)
    if cors is None:
        resources["AdminApi"]["Properties"].pop("CorsConfiguration", None)
    else:
        resources["AdminApi"]["Properties"]["CorsConfiguration"] = cors
    resources["AdminApi"]["Properties"]["Auth"] = {
        "DefaultAuthorizer": LOCAL_AUTHORIZER,
        "Authorizers": {
            LOCAL_AUTHORIZER: {
                "FunctionArn": {"Fn::GetAtt": [LOCAL_AUTHORIZER, "Arn"]},
                "AuthorizerPayloadFormatVersion": "2.0",
                "EnableSimpleResponses": True,
                # No header: API Gateway answers 401 without calling anything, as with a JWT.
                "Identity": {"Headers": [CLAIMS_HEADER]},
            }
        },
    }
    resources[LOCAL_AUTHORIZER] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "Description": "Local only: X-Local-Claims as a Lambda authorizer's context",
            "CodeUri": str(AUTHORIZER_CODE),
            "Handler": "claims_authorizer.handler",
            "Timeout": 10,
        },
    }
    template["Globals"]["Function"]["Environment"]["Variables"]["ADMIN_AUTHORIZER"] = "lambda"
    local = build_dir / "template.local.yaml"
    local.write_text(yaml.safe_dump(template, sort_keys=False))
    return local


def write_env_vars(
    path: Path,
    *,
    tables: dict[str, str],
    master_key_b64: str,
    dynamodb_port: int,
    extra: dict[str, str] | None = None,
) -> Path:
    """--env-vars for every function: table names, the local master key, DynamoDB Local's endpoint
    as the containers see it, and ``extra``. Only variables template.yaml declares reach a function."""
    variables = {setting: tables[logical_id] for logical_id, setting in TABLE_SETTINGS.items()}
    variables.update(
        MASTER_KEY_B64=master_key_b64,
        MASTER_KEY_SECRET_ID="",
        # Deployed-only resources: local runs use the function's own credentials and sign nothing.
        KEY_WRAPPING_ROLE_ARN="",
        FEDERATION_SIGNING_KEY_ID="",
        # No queues unless ``extra`` names them (moto's): sam local would answer a queue's Ref
        # with its logical id, and a unit would then go to the real SQS endpoint.
        **dict.fromkeys(QUEUE_SETTINGS.values(), ""),
        AWS_ENDPOINT_URL_DYNAMODB=f"http://host.docker.internal:{dynamodb_port}",
    )
    variables.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps({"Parameters": variables}, indent=2))
    return path


def declared_variables(template: Path) -> set[str]:
    built = yaml.safe_load(template.read_text())
    declared = set(built["Globals"]["Function"]["Environment"]["Variables"])
    for resource in built["Resources"].values():
        declared |= set(((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {})
    return declared


def sam_environment(template: Path, credentials: tuple[str, str] = ("local", "local")) -> dict[str, str]:
    """The environment for sam itself. A variable the template declares takes its value from the
    shell before the template, so those are dropped: the template and --env-vars decide. sam
    also hands the host's AWS credentials to the containers: it gets ``credentials`` (local
    placeholders unless a local stand-in wants particular ones), so a developer's real
    credentials never reach a local run."""
    dropped = declared_variables(template) | {"AWS_PROFILE", "AWS_SESSION_TOKEN"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    region = env.get("AWS_REGION") or "us-east-1"
    env.update(
        SAM_CLI_TELEMETRY="0",
        AWS_ACCESS_KEY_ID=credentials[0],
        AWS_SECRET_ACCESS_KEY=credentials[1],
        AWS_REGION=region,
        AWS_DEFAULT_REGION=region,
    )
    return env


@dataclass(frozen=True)
class SamLocal:
    template: Path
    image: str
    env_vars: Path
    credentials: tuple[str, str] = ("local", "local")  # what the containers call AWS services with

    @property
    def build_dir(self) -> Path:
        return self.template.parent

    @cached_property
    def environment(self) -> dict[str, str]:
        return sam_environment(self.template, self.credentials)

    @property
    def options(self) -> tuple[str, ...]:
        """What every `sam local` command here is given."""
        return (
            "--template-file", str(self.template),
            "--invoke-image", self.image,
            "--skip-pull-image",
            "--add-host", "host.docker.internal:host-gateway",
            "--env-vars", str(self.env_vars),
            "--parameter-overrides", " ".join(f"{name}={value}" for name, value in LOCAL_PARAMETERS.items()),
        )  # fmt: skip

    def invoke(self, function: str, event: Path, *, timeout: float = 300) -> subprocess.CompletedProcess:
        network = create_network()
        try:
            return subprocess.run(
                [SAM, "local", "invoke", function, "--event", str(event), *self.options, "--docker-network", network],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.environment,
            )
        finally:
            remove_network(network)

    def start(self, command: str, port: int, output: IO[Any] | None = None) -> subprocess.Popen:
        """`sam local start-api` or `start-lambda` on 127.0.0.1:port with warm containers; end it
        with stop()."""
        network = create_network()
        warm = ("--port", str(port), "--warm-containers", "LAZY")
        try:
            process = subprocess.Popen(
                [SAM, "local", command, *warm, *self.options, "--docker-network", network],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                env=self.environment,
            )
        except BaseException:
            remove_network(network)
            raise
        _networks[process.pid] = network
        return process


# The Docker network of each running `sam local start-*` process, by pid.
_networks: dict[int, str] = {}


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)


def create_network() -> str:
    name = f"tenant-kms-local-{uuid.uuid4().hex[:12]}"
    created = _docker("network", "create", "--label", "tenant-kms.local=true", name)
    if created.returncode != 0:
        raise RuntimeError(f"docker network create {name}: {created.stderr.strip()}")
    return name


def network_of(process: subprocess.Popen) -> str:
    return _networks[process.pid]


def containers_on(network: str) -> list[str]:
    """Every container attached to ``network``, running or not."""
    return _docker("ps", "-aq", "--filter", f"network={network}").stdout.split()


def remove_network(network: str) -> None:
    """Remove the containers on ``network``, then the network."""
    containers = containers_on(network)
    if containers:
        _docker("rm", "--force", *containers)
    _docker("network", "rm", network)


def wait_listening(port: int, process: subprocess.Popen, timeout: float) -> bool:
    """True once 127.0.0.1:port accepts connections; False if the process ended or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.5)
    return False


def stop(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM (SAM removes its warm containers), SIGKILL if it lingers, then whatever
    containers are still on its network."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    finally:
        network = _networks.pop(process.pid, None)
        if network is not None:
            remove_network(network)
