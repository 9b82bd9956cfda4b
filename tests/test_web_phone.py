"""The console, the reconnect panel and the client report in Chromium at phone and desktop
widths: staff sign in through the page, the client report opens by share link, nothing
scrolls sideways at 390 px (or 360 px), and screenshots at 390 and 1280 px land in the
test's folder (tmp_path)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from apps.web.auth import hash_password
from apps.web.share import share_token
from engine.connection_store import ConnectionStore
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import run_widget
from tests.test_reporting_support import seed_report_data
from tests.web_server import CHROMIUM, AppServer, chromium, free_port

PASSWORD = "phone staff password"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's Chromium is not installed (scripts/system-deps.sh)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the playwright package is not installed"),
]


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture()
def server(home, tmp_path, monkeypatch):
    port = free_port()
    (tmp_path / "clients.yaml").write_text(
        "clients:\n  bergmann:\n    name: Bergmann Maschinenbau GmbH & Co. KG\n"
        "    locale: de_DE\n")
    monkeypatch.setenv("STRIPE_REPORTS_ADMIN_PASSWORD_HASH", hash_password(PASSWORD))
    monkeypatch.setenv("STRIPE_REPORTS_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("STRIPE_REPORTS_BRAND_NAME", "Northwind Agency")
    now = datetime.now(UTC)
    warehouse = warehouse_from_settings()
    seed_report_data(warehouse, "bergmann", now, currency="eur", scale=4)
    seed_report_data(warehouse, "acme", now, seed=2)
    with ConnectionStore.from_settings() as store:
        for client_id in ("bergmann", "acme", "initech-holdings-international"):
            store.save_connection(client_id, secret_key="sk_test_" + "p" * 24, livemode=False,
                                  account_id=f"acct_{client_id}", name=client_id.title())
        store.record_sync("bergmann", now)
        store.record_sync("acme", now - timedelta(days=4))
        store.record_check("initech-holdings-international", ok=False, steps=[
            "Open Developers → API keys in the client's Stripe Dashboard."],
            reason="Stripe rejected the key of client 'initech-holdings-international': it "
                   "was revoked (api_key_expired).")
    with AppServer("0.0.0.0", port) as app:
        yield app


def _no_sideways_scroll(page, where: str) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{where}: {widths[0]} px wide in a {widths[1]} px window"


def _screenshots(page, folder: Path, name: str) -> None:
    """The whole page, and the first screen as a reader sees it."""
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    page.screenshot(path=str(folder / f"{name}-first-screen.png"))


def _signed_in_context(browser, server, width: int):
    context = browser.new_context(viewport={"width": width, "height": 860},
                                  device_scale_factor=1)
    page = context.new_page()
    page.goto(f"{server.url}/")
    assert "/signin" in page.url
    page.fill("input[name=name]", "Dana")
    page.fill("input[name=password]", PASSWORD)
    page.click("#signin-button")
    page.wait_for_selector("#attention-summary")
    return context, page


@pytest.mark.parametrize("width", [390, 1280, 360])
def test_console_panel_and_client_report_fit_the_screen(server, browser, tmp_path, width):
    context, page = _signed_in_context(browser, server, width)
    pages = {
        "console": "/",
        "reconnect_panel": "/clients/initech-holdings-international/connect",
        "agency_report": "/clients/acme",
    }
    for name, path in pages.items():
        page.goto(f"{server.url}{path}")
        page.wait_for_load_state("networkidle")
        _screenshots(page, tmp_path, f"{name}-{width}")
        if width <= 390:
            _no_sideways_scroll(page, name)
    assert "2 need attention" in page.goto(f"{server.url}/").text()
    context.close()
    with ConnectionStore.from_settings() as store:
        token = share_token(store, "bergmann", timedelta(days=1))
    client = browser.new_context(viewport={"width": width, "height": 860}).new_page()
    client.goto(f"{server.url}/r/{token}")
    client.wait_for_selector("#chart-revenue_over_time[data-drawn=true]")
    _screenshots(client, tmp_path, f"client_report-{width}")
    if width <= 390:
        _no_sideways_scroll(client, "client report")
    gross = run_widget("bergmann", "gross_volume").value
    shown = client.locator('.tile[data-widget="gross_volume"] .tile-value').inner_text()
    assert shown.replace("\xa0", " ").endswith(" €") and str(gross) == client.locator(
        '.tile[data-widget="gross_volume"]').get_attribute("data-value")
    assert client.locator("table.payments tbody tr").count() == 20
    assert (tmp_path / f"client_report-{width}.png").stat().st_size > 10_000
    client.context.close()
