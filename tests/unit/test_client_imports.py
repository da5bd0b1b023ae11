"""tenant_kms_client stands alone: importing it loads nothing of the service nor its
dependencies, and not even boto3 until a direct invoke client is built without one; and it
knows every error code and admin operation the API documents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ONLY = ("tenant_kms", "kms_wrapping", "pydantic", "aws_lambda_powertools", "pynamodb", "boto3", "botocore")


def test_importing_the_client_loads_only_the_standard_library():
    script = (
        "import json, sys; import tenant_kms_client; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'client')!r}); {script}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(json.loads(result.stdout))
    assert "tenant_kms_client" in loaded
    assert not loaded & set(SERVICE_ONLY), sorted(loaded & set(SERVICE_ONLY))


def test_every_error_code_the_api_documents_has_its_class_in_the_client():
    from tenant_kms.openapi import ERROR_CODES
    from tenant_kms_client.errors import BY_CODE

    for status, codes in ERROR_CODES.items():
        for code in codes:
            assert code in BY_CODE, code
            assert (BY_CODE[code].code, BY_CODE[code].status) == (code, status)


def test_the_admin_client_has_a_method_for_each_documented_admin_operation():
    from tenant_kms_client import AdminClient

    document = json.loads((ROOT / "docs" / "openapi.json").read_text())
    operations = {
        operation["operationId"]
        for path, item in document["paths"].items()
        if path.startswith("/tenants/")
        for method, operation in item.items()
        if method != "parameters"
    }
    assert operations == {name for name in vars(AdminClient) if not name.startswith("_")}
