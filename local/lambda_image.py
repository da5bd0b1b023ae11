"""A Docker daemon and a Lambda python3.11 base image for ``sam local``, never pulled.

``sam local invoke`` and ``sam local start-api`` run each function in a container built FROM
a Lambda base image: SAM puts its own Runtime Interface Emulator at /var/rapid/aws-lambda-rie
as the entrypoint, copies the layers to /opt and mounts the built code at /var/task. No
container registry is reachable from CI, so nothing here may pull an image:

- Docker: the running daemon when ``docker info`` answers; otherwise, as root, docker.io is
  installed from Debian's packages and ``dockerd`` started in the background.
- Image: the official ``public.ecr.aws/lambda/python:3.11`` when it is already present;
  otherwise a stand-in built once from Debian bookworm (its python3 is 3.11) with
  debootstrap, the pinned runtime interface client and a /var/runtime/bootstrap like the
  official one's, then ``docker import``-ed and reused while its recipe is unchanged.

``python local/lambda_image.py`` prints what it used and the image to pass to
``sam local ... --invoke-image <image> --skip-pull-image``; it exits 1 with the reason when
Docker cannot be made usable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local"
DOCKERD_LOG = STATE_DIR / "dockerd.log"

OFFICIAL_IMAGE = "public.ecr.aws/lambda/python:3.11"
STAND_IN_IMAGE = "tenant-kms/lambda-python:3.11"
SUITE = "bookworm"  # Debian 12, whose python3 is 3.11: the functions' runtime
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The runtime interface client and its dependencies, pinned exactly (CPython 3.11 wheels).
RUNTIME_CLIENT = ("awslambdaric==4.2.2", "simplejson==4.3.0", "snapshot-restore-py==1.0.0")
# sys.path in the order Lambda's python3.11 runtime uses: code, layers, then the runtime.
BOOTSTRAP = """#!/bin/sh
# Started by the Runtime Interface Emulator, as Lambda starts its python3.11 runtime.
export AWS_EXECUTION_ENV=AWS_Lambda_python3.11
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}:/opt/python/lib/python3.11/site-packages:/opt/python:/var/runtime"
exec /usr/bin/python3 -m awslambdaric "$_HANDLER"
"""
IMAGE_CONFIG = (
    "WORKDIR /var/task",
    "ENV LANG=C.UTF-8",
    "ENV LAMBDA_TASK_ROOT=/var/task",
    "ENV LAMBDA_RUNTIME_DIR=/var/runtime",
    'ENTRYPOINT ["/var/runtime/bootstrap"]',
)
RECIPE = hashlib.sha256(repr((SUITE, RUNTIME_CLIENT, BOOTSTRAP, IMAGE_CONFIG)).encode()).hexdigest()[:16]
RECIPE_LABEL = "tenant-kms.recipe"


class LambdaImageError(RuntimeError):
    """Docker or the Lambda base image cannot be made usable; the message says why."""


def _run(args: list[str], *, what: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LambdaImageError(f"{what} failed: {exc}") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-3000:]
        raise LambdaImageError(f"{what} failed (exit {result.returncode}):\n{output}")
    return result


def is_root() -> bool:
    """Only root can install and start Docker or build the stand-in; anywhere else a missing
    piece means the sam local stage is skipped, and says why."""
    return os.geteuid() == 0


def _apt_install(*packages: str) -> None:
    if not is_root():
        raise LambdaImageError(f"{' '.join(packages)} missing and not root: install it (apt-get install -y ...)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], what="apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-qq", *packages], what=f"apt-get install {' '.join(packages)}", env=env)


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One preparation at a time on this machine: two would race to start dockerd or build."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with (STATE_DIR / "lambda-image.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ------------------------------------------------------------------ docker


def docker_refusal() -> str | None:
    """None when the Docker daemon answers ``docker info``, otherwise why it does not."""
    if shutil.which("docker") is None:
        return "no docker command"
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 30 s"
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"docker info exited with {result.returncode}"


def _wait_for_daemon(process: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker_refusal() is None:
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.5)
    return False


def ensure_docker() -> str:
    """A Docker daemon that answers; says which one."""
    refusal = docker_refusal()
    if refusal is None:
        return "the running Docker daemon (docker info answers)"
    if not is_root():
        raise LambdaImageError(
            f"Docker does not answer ({refusal}) and this is not root, so it cannot be installed or "
            "started here: start Docker, or run as root."
        )
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        _apt_install("docker.io")
    # Any pull the daemon attempts fails at once through a dead proxy, instead of trying a registry.
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    DOCKERD_LOG.touch()
    logged_before = DOCKERD_LOG.stat().st_size
    # Plain dockerd works on Debian 12 VMs; without the iptables modules it still serves sam
    # local, whose containers only need the bridge to reach the host.
    for flags in ([], ["--iptables=false"]):
        with DOCKERD_LOG.open("ab") as log:
            process = subprocess.Popen(
                ["dockerd", *flags],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # outlives this script, for the tests that follow
            )
        if _wait_for_daemon(process):
            command = " ".join(["dockerd", *flags])
            return f"started {command} (pid {process.pid}, log {DOCKERD_LOG})"
        if process.poll() is None:
            process.terminate()
            process.wait(30)
    with DOCKERD_LOG.open("rb") as log:
        log.seek(logged_before)
        tail = log.read().decode(errors="replace").splitlines()[-12:]
    raise LambdaImageError(
        f"Docker does not answer ({refusal}) and dockerd did not start; from {DOCKERD_LOG}:\n" + "\n".join(tail)
    )


# ------------------------------------------------------------------ image


def image_label(image: str, label: str) -> str | None:
    """The image's label value ("" when unlabelled), or None when the image is not present."""
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{ index .Config.Labels "{label}" }}}}', image],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip().replace("<no value>", "")


def debian_mirror() -> str:
    """The Debian archive apt is configured with (the one reachable here), for debootstrap."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":  # deb822 stanzas
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
                if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                    return fields["URIs"].split()[0]
        elif path.suffix == ".list" or path.name == "sources.list":
            for uri, suite in re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.MULTILINE):
                if suite == SUITE:
                    return uri
    return DEFAULT_MIRROR


def build_stand_in(report: Callable[[str], None] = print) -> None:
    if shutil.which("debootstrap") is None:
        _apt_install("debootstrap")
    mirror = debian_mirror()
    report(f"lambda image: building {STAND_IN_IMAGE} from Debian {SUITE} ({mirror}); takes a minute or two")
    with tempfile.TemporaryDirectory(prefix="lambda-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(
            ["debootstrap", "--variant=minbase", "--include=python3,ca-certificates", SUITE, str(rootfs), mirror],
            what="debootstrap",
        )
        runtime = rootfs / "var" / "runtime"
        _run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
                "--platform", f"manylinux2014_{platform.machine()}", "--target", str(runtime), *RUNTIME_CLIENT,
            ],
            what="pip install awslambdaric",
        )  # fmt: skip
        bootstrap = runtime / "bootstrap"
        bootstrap.write_text(BOOTSTRAP)
        bootstrap.chmod(0o755)
        for mount_point in ("var/task", "opt"):
            (rootfs / mount_point).mkdir(parents=True, exist_ok=True)
        changes = [arg for line in (*IMAGE_CONFIG, f"LABEL {RECIPE_LABEL}={RECIPE}") for arg in ("--change", line)]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            _run(["docker", "import", *changes, "-", STAND_IN_IMAGE], what="docker import", stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()


def ensure_image(report: Callable[[str], None] = print) -> tuple[str, str]:
    """The image for --invoke-image, and why it is that one."""
    if image_label(OFFICIAL_IMAGE, RECIPE_LABEL) is not None:  # present (it carries no recipe)
        return OFFICIAL_IMAGE, "the official image, present locally"
    found = image_label(STAND_IN_IMAGE, RECIPE_LABEL)
    if found == RECIPE:
        return STAND_IN_IMAGE, f"stand-in built earlier (recipe {RECIPE}); the official image is not present"
    build_stand_in(report)
    why = "recipe changed" if found is not None else "not present"
    return STAND_IN_IMAGE, f"stand-in built now ({why}); the official image is not present and is never pulled"


def prepare(report: Callable[[str], None] = print) -> str:
    """Docker answering and the Lambda python3.11 image present; returns the image's name."""
    with _exclusive():
        report(f"docker: {ensure_docker()}")
        image, why = ensure_image(report)
        report(f"lambda image: {image}: {why}")
    return image


def main() -> int:
    try:
        image = prepare()
    except LambdaImageError as error:
        if not is_root():
            print(f"sam local stage SKIPPED (its tests will say so too): {error}")
            return 0
        print(f"lambda image: cannot run sam local here: {error}", file=sys.stderr)
        return 1
    print(f"sam local: --invoke-image {image} --skip-pull-image --add-host host.docker.internal:host-gateway")
    return 0


if __name__ == "__main__":
    sys.exit(main())
