"""The local gateway serves the admin page's files under /admin/ and nothing else of the tree."""

from __future__ import annotations

import pytest
from local_gateway import ADMIN_PAGE, static_answer


def test_the_page_and_its_scripts_are_served_fresh_with_their_types():
    status, headers, body = static_answer("GET", "/admin/?tenant=acme", ADMIN_PAGE)
    assert (status, headers["Content-Type"], headers["Cache-Control"]) == (200, "text/html; charset=utf-8", "no-store")
    assert b"Tenant KMS" in body
    for name in ("app.js", "auth.js", "config.js"):
        status, headers, _ = static_answer("GET", f"/admin/{name}", ADMIN_PAGE)
        assert (status, headers["Content-Type"]) == (200, "text/javascript; charset=utf-8")
    assert static_answer("HEAD", "/admin/style.css", ADMIN_PAGE)[1]["Content-Type"] == "text/css; charset=utf-8"


def test_the_folder_without_its_slash_redirects_to_it():
    assert static_answer("GET", "/admin", ADMIN_PAGE) == (308, {"Location": "/admin/"}, b"")


@pytest.mark.parametrize(
    "target", ["/admin/../template.yaml", "/admin/%2e%2e/template.yaml", "/admin/..%2fREADME.md", "/admin/missing.js"]
)
def test_nothing_outside_the_page_is_served(target):
    assert static_answer("GET", target, ADMIN_PAGE)[0] == 404


@pytest.mark.parametrize(("method", "target"), [("GET", "/tenants/acme/kms"), ("POST", "/admin/"), ("GET", "/adminx")])
def test_api_requests_and_other_methods_go_to_the_api(method, target):
    assert static_answer(method, target, ADMIN_PAGE) is None
