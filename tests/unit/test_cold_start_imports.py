"""The domain core imports no AWS SDK session machinery at start-up: boto3 costs ~100 ms of
cold start and only tenants on an AWS provider (or onboarding) need it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_service_and_the_identity_module_do_not_import_boto3():
    core = "tenant_kms.service, tenant_kms.records, tenant_kms.jobs, tenant_kms.unsealing, tenant_kms.identity"
    script = f"import sys, {core}; print('boto3' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": f"{ROOT / 'shared'}:{ROOT / 'layers' / 'providers'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
