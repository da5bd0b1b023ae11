from __future__ import annotations

from pathlib import Path

import lambda_image
import pytest
from build_bundle import SAM, build


@pytest.fixture(autouse=True)
def _dynamodb(dynamodb_local):
    return dynamodb_local


@pytest.fixture(scope="session")
def invoke_image() -> str:
    try:
        return lambda_image.prepare()
    except lambda_image.LambdaImageError as error:
        reason = str(error)
    # The issue asks for this stage wherever Docker is usable, and for a clear word where it is
    # not: only a non-root machine without Docker gets here, where Docker can be neither
    # installed nor started. As root (CI, .ci/run) the same failure fails the run.
    if not lambda_image.is_root():
        pytest.skip(f"sam local stage skipped, not root and {reason}")
    pytest.fail(f"sam local needs Docker and a Lambda python3.11 image: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def sam_build(tmp_path_factory) -> Path:
    """What `make build` produces (sam build, bytecode included), once for every module here;
    each module writes its own files next to it, never into it."""
    build_dir = tmp_path_factory.mktemp("sam-build") / "build"
    built = build(build_dir, sam=SAM)
    assert built.returncode == 0 and "Build Succeeded" in built.stdout, built.stdout[-3000:] + built.stderr[-3000:]
    return build_dir
