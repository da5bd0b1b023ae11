"""`sam build`, then compile the bytecode into the artifact.

Lambda's code directory is read-only, so without shipped bytecode every cold start compiles
every module again. Hash-based, unchecked .pyc files are used as they are whatever the
file times in the deployment zip say.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAM = os.environ.get("SAM_CLI", str(ROOT / ".tools-sam" / "bin" / "sam"))


def build(build_dir: Path, *, sam: str = SAM) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sam, "build", "--build-dir", str(build_dir), "--template-file", str(ROOT / "template.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        timeout=900,
    )
    if result.returncode == 0:
        ok = compileall.compile_dir(
            str(build_dir),
            quiet=1,
            workers=0,
            invalidation_mode=compileall.py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        if not ok:
            return subprocess.CompletedProcess(result.args, 1, result.stdout, result.stderr + "\ncompileall failed")
    return result


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".aws-sam" / "build"
    outcome = build(target)
    sys.stdout.write(outcome.stdout)
    sys.stderr.write(outcome.stderr)
    sys.exit(outcome.returncode)
