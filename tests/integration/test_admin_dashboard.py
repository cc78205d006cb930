"""The admin dashboard in headless Chromium while h2load runs: live charts, the connections
table, a connection closed by a click, and the token form. Debian's chromium, driven by Playwright.

No browser is downloaded: Playwright drives /usr/bin/chromium (apt-get install chromium). The
screenshot goes to $OSMIUM_ARTIFACTS/dashboard.png (the test's tmp_path when that is unset).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.support import wait_until
from tests.support.admin import TOKEN, AdminServer, admin_server

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
# A headless browser in a container: no sandbox (no user namespaces), no GPU, and nothing that
# reaches for the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOAD_CLIENTS = 4
# Paced (--rps per client) so the load outlasts the test: the connections must still be open
# when the test looks for them and closes one. -n bounds it if the test is cut short.
H2LOAD_ARGS = ("-n", "20000", "-c", str(LOAD_CLIENTS), "-m", "10", "--rps", "200")
# The page polls every second (connections every 2 s): a few polls are enough for anything.
PAGE_DEADLINE = 8.0

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which("h2load") is None,
    reason="needs Debian's chromium at /usr/bin/chromium and h2load (nghttp2-client)",
)


@pytest.fixture(scope="module")
def admin() -> Iterator[AdminServer]:
    with admin_server("--workers", "2") as admin:
        yield admin


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page threw: {errors}"


@pytest.fixture
def load(admin: AdminServer) -> Iterator[subprocess.Popen[str]]:
    """h2load against the served port, in the background; stopped after the test."""
    command = ["h2load", *H2LOAD_ARGS, f"{admin.server.url}/"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield process
    process.terminate()
    process.communicate(timeout=10)


def artifacts_dir(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("OSMIUM_ARTIFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def number(page: sync_api.Page, selector: str) -> float | None:
    """The raw number behind a figure the page shows (its data-value), None while it has none."""
    value = page.get_attribute(selector, "data-value")
    return float(value) if value else None


def shown_connection_ids(page: sync_api.Page) -> set[str]:
    rows = page.locator("#connections tbody tr[data-connection-id]")
    return {rows.nth(i).get_attribute("data-connection-id") for i in range(rows.count())}


def test_live_charts_connections_and_a_close_by_click(
    admin: AdminServer, load: subprocess.Popen[str], page: sync_api.Page, tmp_path: Path
) -> None:
    page.goto(f"{admin.admin_url}/#token={TOKEN}")
    assert "token" not in page.url, "the token stays in the address bar"

    # Charts: req/s is positive and moves from one second to the next while h2load runs.
    rates: set[float] = set()

    def rps_changed() -> bool:
        rate = number(page, "#rps-now")
        if rate:
            rates.add(rate)
        return len(rates) >= 2

    wait_until(rps_changed, PAGE_DEADLINE, "two different positive req/s figures")
    assert (number(page, "#connections-now") or 0) >= LOAD_CLIENTS
    assert (number(page, "#p99-now") or 0) > 0

    # The table lists h2load's connections: the same ids the API lists.
    wait_until(
        lambda: len(shown_connection_ids(page)) >= LOAD_CLIENTS,
        PAGE_DEADLINE,
        "a row per h2load connection",
    )
    listed = admin.connection_ids()
    assert shown_connection_ids(page) == listed, "the table and the API disagree"
    assert load.poll() is None, "h2load finished before the test closed a connection"

    # A click on a row opens its detail; a click on its "close" closes it, and only it.
    closed = sorted(listed)[0]
    row = page.locator(f'#connections tr[data-connection-id="{closed}"]')
    row.locator("td").first.click()
    page.wait_for_selector("#connection-detail:not([hidden])", timeout=PAGE_DEADLINE * 1000)
    assert page.text_content("#detail-id") == closed
    page.click("#detail-close")
    row.locator(".close-connection").click()
    row.wait_for(state="detached", timeout=PAGE_DEADLINE * 1000)
    assert closed not in admin.connection_ids()
    assert admin.api.get(f"/api/connections/{closed}").status_code == 404
    assert admin.connection_ids() >= listed - {closed}, "closing one closed others too"

    page.screenshot(path=str(artifacts_dir(tmp_path) / "dashboard.png"))


def test_without_a_token_the_page_asks_for_one(admin: AdminServer, page: sync_api.Page) -> None:
    page.goto(f"{admin.admin_url}/")
    page.wait_for_selector("#token-form-wrap:not([hidden])", timeout=PAGE_DEADLINE * 1000)
    assert number(page, "#rps-now") is None, "data shown without a token"

    page.fill("#token-input", "wrong")
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#token-error:not([hidden])", timeout=PAGE_DEADLINE * 1000)

    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#token-form-wrap[hidden]", state="attached")
    page.wait_for_selector("#workers tbody tr", timeout=PAGE_DEADLINE * 1000)
    assert page.locator("#workers tbody tr").count() == 2
