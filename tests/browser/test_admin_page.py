"""The admin page (Settings > Security > Tenant KMS) in Debian's headless Chromium, against the
in-process gateway on DynamoDB Local, as `make run` serves it: every state the page shows is
checked in the page and in the tables, and photographed into artifacts/admin-page/.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest
from admin_browser import admin_get, admin_page, chromium, invoke, local_gateway, photograph, versions_shown
from playwright.sync_api import Browser, Page, expect
from support import Function, read_record, snapshot_tables
from testenv import TABLES


@pytest.fixture(scope="module")
def gateway(dynamodb_local) -> Iterator[dict[str, int]]:
    """Rewrap batches of 2 records, so a job shows progress between units."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REWRAP_BATCH_RECORDS", "2")
        with local_gateway() as ports:
            yield ports


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def page(browser, gateway, tenant_id) -> Iterator[Page]:
    with admin_page(browser, gateway, tenant_id) as page:
        yield page


def config_row(tenant_id: str) -> dict:
    key = {"tenant_id": {"S": tenant_id}}
    return boto3.client("dynamodb").get_item(TableName=TABLES["TenantConfigTable"], Key=key, ConsistentRead=True)[
        "Item"
    ]


def version_row(tenant_id: str, version: int) -> dict:
    key = {"tenant_id": {"S": tenant_id}, "version": {"N": str(version)}}
    return boto3.client("dynamodb").get_item(TableName=TABLES["KeyVersionTable"], Key=key, ConsistentRead=True)["Item"]


def record_versions(tenant_id: str) -> dict[str, int]:
    items = boto3.client("dynamodb").query(
        TableName=TABLES["TenantDataTable"],
        KeyConditionExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": tenant_id}},
        ConsistentRead=True,
    )["Items"]
    return {item["name"]["S"]: int(item["version"]["N"]) for item in items}


def configure_global(page: Page) -> None:
    page.get_by_label("Platform key").check()
    page.get_by_role("button", name="Save and verify").click()
    expect(page.locator("#save-result")).to_contain_text("Saved. Verified at")
    expect(page.locator("#status")).to_have_text("active")


def test_configure_rotate_and_rewrap_with_progress(page, gateway, tenant_id):
    # Given a tenant that has no key yet
    expect(page.locator("#status")).to_have_text("unconfigured")
    expect(page.locator("#provider")).to_have_text("not configured")
    photograph(page, "global-01-unconfigured")

    # When the admin picks the platform key and saves
    configure_global(page)

    # Then the probe passed, version 1 is active, and the tables say so
    expect(page.locator("#active-version")).to_have_text("1")
    expect(page.locator("#versions tbody tr")).to_have_count(1)
    assert versions_shown(page) == [("1", "active", "0")]
    row = config_row(tenant_id)
    assert (row["provider"]["S"], row["status"]["S"], row["active_version"]["N"]) == ("global", "active", "1")
    assert "last_verified_at" in row
    photograph(page, "global-02-configured")

    # Given five records an internal service wrote under version 1
    for i in range(5):
        put = {"op": "put", "tenant_id": tenant_id, "name": f"rec-{i}", "value_b64": base64.b64encode(b"x").decode()}
        assert invoke(gateway, "TenantDataFunction", put)["version"] == 1

    # When the admin rotates
    page.get_by_role("button", name="Rotate: new version").click()

    # Then version 2 is active and version 1, retired, still holds the records
    expect(page.locator("#rotate-result")).to_have_text("Version 2 is active; older versions are retired.")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    assert versions_shown(page) == [("2", "active", "0"), ("1", "retired", "5")]
    assert (version_row(tenant_id, 1)["status"]["S"], version_row(tenant_id, 2)["status"]["S"]) == ("retired", "active")
    expect(page.locator("#active-version")).to_have_text("2")
    photograph(page, "global-03-rotated")

    # When the admin starts a rewrap, and its job's units run one batch of 2 at a time
    page.get_by_role("button", name="Start rewrap").click()
    expect(page.locator("#rewrap-status")).to_have_text("running")
    job_id = page.locator("#rewrap-job-id").inner_text()
    expect(page.locator("#rewrap-remaining")).to_have_text("5")
    job = invoke(gateway, "RewrapFunction", {"tenant_id": tenant_id, "job_id": job_id})

    # Then the page follows the job: 2 moved, 3 to go, in the page as in the table
    assert (job["status"], job["migrated"], job["remaining"]) == ("running", 2, 3)
    expect(page.locator("#rewrap-migrated")).to_have_text("2")
    expect(page.locator("#rewrap-remaining")).to_have_text("3")
    expect(page.locator("#rewrap-progress")).to_have_attribute("value", "2")
    expect(page.locator('#versions tr[data-version="1"] td').nth(6)).to_have_text("3")
    assert sorted(record_versions(tenant_id).values()) == [1, 1, 1, 2, 2]
    photograph(page, "global-04-rewrap-progress")

    # And a reload follows the same job on
    page.reload()
    expect(page.locator("#rewrap-job-id")).to_have_text(job_id)
    expect(page.locator("#rewrap-remaining")).to_have_text("3")

    # And once the job finishes, every record is on version 2 and version 1 holds none
    while job["status"] == "running":
        job = invoke(gateway, "RewrapFunction", {"tenant_id": tenant_id, "job_id": job_id})
    assert job["status"] == "succeeded", job
    expect(page.locator("#rewrap-status")).to_have_text("succeeded")
    expect(page.locator("#rewrap-migrated")).to_have_text("5")
    expect(page.locator("#rewrap-remaining")).to_have_text("0")
    expect(page.locator('#versions tr[data-version="1"] td').nth(6)).to_have_text("0")
    assert set(record_versions(tenant_id).values()) == {2}
    photograph(page, "global-05-rewrap-done")

    # When the admin destroys version 1, which no record references any more, and confirms
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('#versions tr[data-version="1"]').get_by_role("button", name="Destroy").click()

    # Then its wrapped key is gone from the table and the page lists it as destroyed
    expect(page.locator("#rotate-result")).to_have_text("Version 1 destroyed.")
    expect(page.locator('#versions tr[data-version="1"]')).to_have_attribute("data-status", "destroyed")
    destroyed = version_row(tenant_id, 1)
    assert destroyed["status"]["S"] == "destroyed" and "wrapped_key" not in destroyed
    photograph(page, "global-06-destroyed")


def test_a_sealed_tenant_shows_why_and_unseals_once_its_key_unwraps(page, gateway, tenant_id):
    # Given a tenant on the platform key with version 2 active and a record under it
    configure_global(page)
    page.get_by_role("button", name="Rotate: new version").click()
    expect(page.locator("#active-version")).to_have_text("2")
    put = {"op": "put", "tenant_id": tenant_id, "name": "db-admin-password", "value_b64": "aHVudGVyMg=="}
    assert invoke(gateway, "TenantDataFunction", put)["version"] == 2
    # And version 2's row now holds version 1's wrapped key, so the key is refused as a wrong key would be
    intact = version_row(tenant_id, 2)
    boto3.client("dynamodb").put_item(
        TableName=TABLES["KeyVersionTable"],
        Item={**intact, "wrapped_key": version_row(tenant_id, 1)["wrapped_key"]},
    )

    # When a service instance with nothing cached reads the record, the tenant seals
    assert read_record(Function("tenant_data"), tenant_id, "db-admin-password") == "sealed"
    row = config_row(tenant_id)
    assert row["status"]["S"] == "sealed"

    # Then the page shows the sealed banner with the recorded reason
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#sealed-banner")).to_be_visible()
    expect(page.locator("#status")).to_have_text("sealed")
    expect(page.locator("#sealed-reason")).to_have_text(row["sealed_reason"]["S"])
    assert row["sealed_reason"]["S"]
    photograph(page, "sealed-01-banner")

    # When the admin tries to rotate or rewrap while sealed
    before = snapshot_tables(TABLES)
    page.get_by_role("button", name="Rotate: new version").click()
    page.get_by_role("button", name="Start rewrap").click()

    # Then both are refused as sealed, and nothing changed
    expect(page.locator("#rotate-result")).to_contain_text("sealed: ")
    expect(page.locator("#rewrap-result")).to_contain_text("sealed: ")
    expect(page.locator("#rewrap-job")).to_be_hidden()
    assert snapshot_tables(TABLES) == before

    # When the admin unseals while the key is still refused
    page.get_by_role("button", name="Unseal").click()

    # Then the page says why and nothing changed
    expect(page.locator("#unseal-result")).to_contain_text("verification_failed")
    expect(page.locator("#sealed-banner")).to_be_visible()
    assert snapshot_tables(TABLES) == before
    photograph(page, "sealed-02-unseal-refused")

    # When the key unwraps again and the admin unseals
    boto3.client("dynamodb").put_item(TableName=TABLES["KeyVersionTable"], Item=intact)
    page.get_by_role("button", name="Unseal").click()

    # Then the banner is gone and the tenant is active in the table
    expect(page.locator("#notice")).to_have_text("Unsealed: version 2 unwraps again.")
    expect(page.locator("#status")).to_have_text("active")
    expect(page.locator("#sealed-banner")).to_be_hidden()
    assert config_row(tenant_id)["status"]["S"] == "active"
    photograph(page, "sealed-03-unsealed")


def test_a_customer_key_shows_the_onboarding_values_and_a_refused_save_changes_nothing(page, gateway, tenant_id):
    # Given a tenant on the platform key, verified again on request
    configure_global(page)
    page.get_by_role("button", name="Verify now").click()
    expect(page.locator("#verify-result")).to_contain_text("Verified at")
    assert "last_verify_error" not in config_row(tenant_id)

    # When the admin picks their own AWS KMS key
    page.get_by_label("Your AWS KMS key").check()

    # Then the page shows what their AWS account must trust: this tenant's issued external id
    external_id = page.locator('[data-onboarding="aws.external_id"]')
    expect(external_id).not_to_have_text("")
    assert external_id.inner_text() == admin_get(gateway, tenant_id, "/kms/onboarding")["aws"]["external_id"]
    expect(page.get_by_label("Key ARN or alias ARN")).to_be_visible()
    photograph(page, "picker-01-customer-aws-onboarding")

    # And for an Azure or Google key, what their federation must name; what this deployment
    # cannot answer (no key-wrapping role here, so no GCP principal) is said, not left blank
    onboarding = admin_get(gateway, tenant_id, "/kms/onboarding")
    page.get_by_label("Your Azure Key Vault key").check()
    for name in ("subject", "audience"):
        expect(page.locator(f'[data-onboarding="azure.{name}"]')).to_have_text(onboarding["azure"][name])
    expect(page.get_by_label("Entra tenant id")).to_be_visible()
    page.get_by_label("Your Google Cloud KMS key").check()
    assert onboarding["gcp"]["principal"] is None
    expect(page.locator('[data-onboarding="gcp.principal"]')).to_have_text("not available in this deployment")
    expect(page.get_by_label("Workload identity provider")).to_be_visible()
    photograph(page, "picker-02-customer-gcp-onboarding")
    page.get_by_label("Your AWS KMS key").check()

    # When the admin saves a key that is not a KMS key ARN
    page.get_by_label("Region").fill("eu-west-1")
    page.get_by_label("Key ARN or alias ARN").fill(f"not-an-arn-{secrets.token_hex(4)}")
    page.get_by_label("Role ARN").fill("arn:aws:iam::111122223333:role/tenant-kms")
    before = snapshot_tables(TABLES)
    page.get_by_role("button", name="Save and verify").click()

    # Then it is refused with the API's reason, the platform key stays, and the tables are unchanged
    expect(page.locator("#save-result")).to_contain_text("Not saved. invalid_request:")
    expect(page.locator("#provider")).to_contain_text("global")
    assert snapshot_tables(TABLES) == before
    photograph(page, "picker-03-save-refused")


def test_a_deployment_signs_in_with_a_bearer_token_from_its_own_origin(browser, gateway, tenant_id):
    # Given the page on one origin and the admin API on another that AdminUiOrigins names,
    # with a config.js for a deployed API: its URL and the signed-in user's token
    page_origin = f"http://127.0.0.1:{gateway['http']}"
    with local_gateway(admin_ui_origins=page_origin) as api:
        api_base = f"http://127.0.0.1:{api['http']}"
        config = (
            f"window.TENANT_KMS_ADMIN = {{apiBase: {json.dumps(api_base)}, tenantId: 'acme', pollMilliseconds: 1000,"
            " auth: {mode: 'bearer', token: async () => 'token-of-the-signed-in-user'}};"
        )
        with admin_page(browser, gateway, tenant_id, config=config) as page:
            sent = []
            page.on("request", lambda request: sent.append(request) if request.url.startswith(api_base) else None)
            page.get_by_role("button", name="Refresh").click()

            # Then the page reads the API's answer across origins (CORS let it): no JWT authorizer
            # runs locally, so the token gets the authorizer's 401, which the page shows
            expect(page.locator("#error")).to_have_text("http_401: Unauthorized")
            expect(page.locator("#status")).to_have_text("unknown")
            photograph(page, "bearer-01-unauthorized")
            # And it sent the bearer token, and no local claims
            headers = sent[0].all_headers()
            assert sent[0].url == f"{api_base}/tenants/{tenant_id}/kms"
            assert headers["authorization"] == "Bearer token-of-the-signed-in-user"
            assert "x-local-claims" not in headers


def test_a_change_that_needs_a_fresh_login_signs_in_again_and_is_sent_once_more(browser, gateway, tenant_id):
    # Given an admin who signed in an hour ago (local claims with that auth_time)
    signed_in_at = int(time.time()) - 3600
    config = (
        "window.TENANT_KMS_ADMIN = {apiBase: '', tenantId: 'acme', pollMilliseconds: 1000, auth: {mode: 'local-claims',"
        f" signedInAt: {signed_in_at}, claims: {{sub: 'admin@acme.example', scope: 'tenant-kms/admin'}}}}}};"
    )
    with admin_page(browser, gateway, tenant_id, config=config) as page:
        answers = []
        page.on("response", lambda response: answers.append(response) if response.request.method == "PUT" else None)

        # When they save a key: the API asks for a login of the last 300 s
        page.get_by_label("Platform key").check()
        page.get_by_role("button", name="Save and verify").click()

        # Then the page signs in again, sends the change once more, and it is saved
        expect(page.locator("#save-result")).to_contain_text("Saved. Verified at")
        expect(page.locator("#notice")).to_have_text("Signed in again: this change needs a login of the last 300 s.")
        refused, saved = answers
        assert (refused.status, refused.header_value("www-authenticate")) == (
            401,
            'Bearer error="insufficient_user_authentication", max_age=300',
        )
        assert refused.json()["error"]["code"] == "step_up_required"
        sent = [json.loads(answer.request.header_value("x-local-claims"))["auth_time"] for answer in answers]
        assert sent[0] == signed_in_at and sent[1] > signed_in_at + 3000
        assert saved.status == 200 and config_row(tenant_id)["provider"]["S"] == "global"
        photograph(page, "step-up-01-signed-in-again")
