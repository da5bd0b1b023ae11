"""The admin page in Debian's headless Chromium, for the browser tests: the admin API with the
page beside it on the in-process gateway (as `make run` serves it), one browser per test module,
a screenshot per state into artifacts/admin-page/.

Playwright drives /usr/bin/chromium (make setup installs it from Debian's packages); it never
downloads a browser of its own. No browser, no test: a missing one fails, it is not skipped.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from dynamodb_local import free_port
from local_gateway import ADMIN_PAGE, Gateway, serve
from playwright.sync_api import Browser, Page, expect, sync_playwright
from support import ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "artifacts" / "admin-page"
# A loaded machine starts Chromium and answers slowly: wait for states, never for a time.
WAIT_MS = 60_000
# Flags that keep Chromium off the network it has no business reaching (no updates, no sync).
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make setup` installs Debian's chromium"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def local_gateway(*, admin_ui_origins: str = "") -> Iterator[dict[str, int]]:
    """The admin API with the page under /admin/, and the Lambda invoke API: their ports. The
    functions read the environment as it is now; ``admin_ui_origins`` as AdminUiOrigins."""
    routes = Gateway(admin_ui_origins=admin_ui_origins)
    servers = {
        "http": serve(routes, port=free_port(), api="http", admin_page=ADMIN_PAGE),
        "invoke": serve(routes, port=free_port(), api="invoke"),
    }
    try:
        yield {api: server.server_address[1] for api, server in servers.items()}
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


@contextlib.contextmanager
def admin_page(browser: Browser, ports: dict[str, int], tenant_id: str, *, config: str = "") -> Iterator[Page]:
    """The page for ``tenant_id``, loaded, in a context of its own; ``config``: another
    admin/config.js, as a deployment writes its own."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    try:
        if config:
            script = {"content_type": "text/javascript", "body": config}
            context.route("**/admin/config.js", lambda route: route.fulfill(**script))
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"http://127.0.0.1:{ports['http']}/admin/?tenant={tenant_id}")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        yield page
    finally:
        context.close()


def photograph(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def invoke(ports: dict[str, int], function: str, payload: dict) -> dict:
    """A direct invoke through the gateway's Lambda invoke API, as an internal service calls it."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports['invoke']}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(payload).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)


def admin_get(ports: dict[str, int], tenant_id: str, path: str) -> dict:
    """A GET of the admin API with the tenant admin's local claims."""
    claims = {"sub": "test", "tenant_id": tenant_id, "scope": "tenant-kms/admin"}
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports['http']}/tenants/{tenant_id}{path}", headers={"X-Local-Claims": json.dumps(claims)}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)


def versions_shown(page: Page) -> list[tuple[str, str, str]]:
    """(version, status, records) of each row of the versions table, newest first."""
    rows = page.locator("#versions tbody tr")
    return [tuple(rows.nth(i).locator("td").nth(c).inner_text() for c in (0, 1, 6)) for i in range(rows.count())]
