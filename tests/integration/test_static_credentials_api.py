"""Static credentials in a configure body: 400 static_credentials_rejected, nothing stored."""

from __future__ import annotations

import pytest
from credential_shapes import BYOK, SHAPES
from support import Function, http_sample, snapshot_tables
from testenv import TABLES


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("provider", ["customer_kms_aws", "global"])
def test_static_credentials_are_refused_and_nothing_is_stored(tenant_id, shape, provider):
    body = {"provider": provider, **SHAPES[shape]}
    if provider == "customer_kms_aws":
        body["config"] = {**BYOK, **body["config"]}
    before = snapshot_tables(TABLES)
    status, answer = Function("configure").http(http_sample("configure_put_global", tenant_id, body=body))
    assert (status, answer["error"]["code"]) == (400, "static_credentials_rejected")
    assert snapshot_tables(TABLES) == before
