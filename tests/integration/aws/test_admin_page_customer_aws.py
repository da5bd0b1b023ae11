"""The admin page with the customer's own AWS KMS key (moto, IAM enforced), in Debian's headless
Chromium: the onboarding values the customer trusts, save with the probe's result, the
customer pulling the grant (verification fails, the tenant seals with AWS's reason) and the
unseal once the grant is back. Screenshots in artifacts/admin-page/customer-aws-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from admin_browser import admin_get, admin_page, chromium, invoke, local_gateway, photograph, versions_shown
from conftest import make_customer
from playwright.sync_api import Browser, expect
from support import Function, read_record
from testenv import TABLES


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def config_row(tenant_id: str) -> dict:
    key = {"tenant_id": {"S": tenant_id}}
    table = TABLES["TenantConfigTable"]
    return boto3.client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]


def test_the_customer_pastes_the_onboarding_values_saves_and_pulls_the_grant(browser, aws, tenant_id):
    # The functions as deployed here: their own identity, the key-wrapping role, moto's KMS
    with local_gateway() as ports, admin_page(browser, ports, tenant_id) as page:
        # Given the admin picks their own AWS KMS key
        page.get_by_label("Your AWS KMS key").check()

        # Then the page shows what the customer's role must trust
        principal = page.locator('[data-onboarding="aws.principal_arn"]')
        external_id = page.locator('[data-onboarding="aws.external_id"]')
        expect(principal).to_have_text(aws.wrapping_role_arn)
        expect(external_id).not_to_have_text("")
        photograph(page, "customer-aws-01-onboarding")

        # When the customer sets up their key and a role trusting exactly those values
        customer = make_customer(aws, tenant_id)
        assert customer.external_ids[tenant_id] == external_id.inner_text()
        # And the admin enters the key and role and saves
        page.get_by_label("Region").fill("us-east-1")
        page.get_by_label("Key ARN or alias ARN").fill(customer.key_arn)
        page.get_by_label("Role ARN").fill(customer.role_arn)
        page.get_by_role("button", name="Save and verify").click()

        # Then the probe passed through the customer's role: version 1 under their key
        expect(page.locator("#save-result")).to_contain_text("Saved. Verified at")
        expect(page.locator("#status")).to_have_text("active")
        expect(page.locator("#provider")).to_contain_text("customer_kms_aws")
        expect(page.locator("#session-ttl")).to_have_text("300 s")
        row = config_row(tenant_id)
        assert (row["provider"]["S"], row["active_version"]["N"]) == ("customer_kms_aws", "1")
        assert row["config"]["S"].count(customer.external_ids[tenant_id]) == 1
        photograph(page, "customer-aws-02-saved")

        # Given a record under that key
        put = {"op": "put", "tenant_id": tenant_id, "name": "db-admin-password", "value_b64": "aHVudGVyMg=="}
        assert invoke(ports, "TenantDataFunction", put)["version"] == 1

        # When the customer pulls the grant and the admin verifies
        customer.pull_grant()
        page.get_by_role("button", name="Verify now").click()

        # Then verification fails with AWS's refusal, recorded on the config
        expect(page.locator("#verify-result")).to_contain_text("Verification failed: customer_kms_aws:")
        expect(page.locator("#last-verify-error")).to_contain_text("AccessDenied")
        assert "AccessDenied" in config_row(tenant_id)["last_verify_error"]["S"]
        photograph(page, "customer-aws-03-verify-failed")

        # And saving again is refused by the probe: the version stays as it was
        page.get_by_role("button", name="Save and verify").click()
        expect(page.locator("#save-result")).to_contain_text("Not saved. verification_failed:")
        expect(page.locator("#save-result")).to_contain_text("Nothing changed")
        assert versions_shown(page) == [("1", "active", "1")]
        assert config_row(tenant_id)["active_version"]["N"] == "1"
        photograph(page, "customer-aws-04-save-refused")

        # When a service instance with nothing cached reads the record, the tenant seals
        assert read_record(Function("tenant_data"), tenant_id, "db-admin-password") == "sealed"
        reason = config_row(tenant_id)["sealed_reason"]["S"]
        page.get_by_role("button", name="Refresh").click()

        # Then the page shows the banner with AWS's reason
        expect(page.locator("#sealed-banner")).to_be_visible()
        expect(page.locator("#sealed-reason")).to_have_text(reason)
        assert "AccessDenied" in reason
        photograph(page, "customer-aws-05-sealed")

        # When the customer restores the grant and the admin unseals
        customer.restore_grant()
        page.get_by_role("button", name="Unseal").click()

        # Then the tenant is active again and the record opens
        expect(page.locator("#notice")).to_have_text("Unsealed: version 1 unwraps again.")
        expect(page.locator("#sealed-banner")).to_be_hidden()
        assert admin_get(ports, tenant_id, "/kms")["status"] == "active"
        assert read_record(Function("tenant_data"), tenant_id, "db-admin-password") == (b"hunter2", 1)
        photograph(page, "customer-aws-06-unsealed")
