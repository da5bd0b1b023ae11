"""A customer_kms_aws configure repeated as it is stored (the issued external id given or
left out) re-verifies through the customer's role and provisions nothing."""

from __future__ import annotations

from conftest import make_customer
from support import Function, http_sample
from world import configure


def test_the_same_customer_config_with_or_without_the_issued_external_id_provisions_nothing(tenant_id, aws, kms_proxy):
    customer = make_customer(aws, tenant_id)
    assert configure(tenant_id, "customer_kms_aws", customer.config())[0] == 200
    kms_proxy.reset()

    without_id = configure(tenant_id, "customer_kms_aws", customer.config())
    with_id = configure(tenant_id, "customer_kms_aws", customer.config(external_id=customer.external_ids[tenant_id]))

    assert without_id[0] == with_id[0] == 200, (without_id, with_id)
    assert without_id[1]["active_version"] == with_id[1]["active_version"] == 1
    assert with_id[1]["last_verified_at"] >= without_id[1]["last_verified_at"]
    assert kms_proxy.calls["Encrypt"] == kms_proxy.calls["Decrypt"] == 2  # one probe each, nothing wrapped
    listed = Function("provision").http(http_sample("provision_list", tenant_id))[1]["versions"]
    assert [(v["version"], v["status"]) for v in listed] == [(1, "active")]
