"""The report page in a real browser: Debian's Chromium driven by Playwright.

The app runs with uvicorn on a free 127.0.0.1 port over a temporary STRIPE_REPORTS_HOME.
A screenshot of the report lands in build/screenshots/report.png.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from apps.web.agency_report import ANALYTICS_TILES
from apps.web.app import TILES
from engine.connection_store import ConnectionStore
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import format_value, run_widget
from tests.test_reporting_support import seed_report_data
from tests.web_server import CHROMIUM, AppServer, chromium

SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
NEW_KEY = "sk_test_" + "N3wKeyBody" * 3

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
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    opened = context.new_page()
    external: list[str] = []
    opened.on("request", lambda r: external.append(r.url)
              if not r.url.startswith(("http://127.0.0.1", "data:")) else None)
    yield opened
    context.close()
    assert external == [], f"the page fetched from outside the app: {external}"


def _connect(store: ConnectionStore, client_id: str, name: str, key_tail: str) -> None:
    store.save_connection(client_id, secret_key="sk_test_" + "k" * 20 + key_tail,
                          account_id=f"acct_{client_id}", livemode=False, name=name)


@pytest.fixture()
def app(home):
    now = datetime.now(UTC)
    seed_report_data(warehouse_from_settings(), "acme", now)
    with ConnectionStore.from_settings() as store:
        _connect(store, "acme", "Acme Corp", "wxyz")
        store.record_sync("acme", now)
        _connect(store, "initech", "Initech", "9876")
        store.record_check("initech", ok=False,
                           reason="Stripe rejected Initech's key: it was revoked.",
                           steps=["In Initech's Stripe Dashboard open Developers → API keys.",
                                  "Create a new Secret key and paste it with Connect."])
    with AppServer() as server:
        yield server


def _tiles_match_widgets(page, client_id: str, start=None, end=None) -> dict[str, str]:
    shown = {}
    for name in TILES:
        expected = run_widget(client_id, name, start, end).to_json()
        tile = page.locator(f'.tile[data-widget="{name}"]')
        assert tile.get_attribute("data-state") == expected["state"], name
        text = tile.locator(".tile-value").inner_text().strip()
        if expected["state"] in ("ok", "stale"):
            unit = run_widget(client_id, name, start, end).unit
            assert text == format_value(expected["value"], unit, expected["currency"]), name
        shown[name] = text
    return shown


def test_report_numbers_equal_the_widget_json(app, page):
    page.goto(f"{app.url}/clients/acme")
    page.wait_for_selector("#chart-revenue_over_time[data-drawn=true]")
    page.wait_for_selector("#chart-mrr_over_time[data-drawn=true]")
    shown = _tiles_match_widgets(page, "acme")
    assert shown["gross_volume"].startswith("$") and shown["mrr"] != "—"
    assert page.locator("table.payments tbody tr").count() == 20
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)


def test_a_new_date_range_changes_the_numbers(app, page):
    page.goto(f"{app.url}/clients/acme")
    before = page.locator('.tile[data-widget="gross_volume"] .tile-value').inner_text()
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=80), today - timedelta(days=70)
    page.fill("#start", start.isoformat())
    page.fill("#end", end.isoformat())
    page.click("#refresh")
    page.wait_for_url(f"**/clients/acme?start={start}&end={end}*")
    shown = _tiles_match_widgets(page, "acme", start, end)
    assert shown["gross_volume"] != before
    assert page.locator("input#start").input_value() == start.isoformat()


def test_a_failed_client_shows_reconnect_steps(app, page):
    page.goto(f"{app.url}/clients/initech")
    banner = page.locator("#reconnect")
    assert "it was revoked" in banner.inner_text()
    assert banner.locator("ol.steps li").all_inner_texts() == [
        "In Initech's Stripe Dashboard open Developers → API keys.",
        "Create a new Secret key and paste it with Connect."]
    key_figures = page.locator('section[aria-label="Key figures"] .tile')
    assert key_figures.count() == len(TILES)
    # Every figure on the page, the analytics sections' too, waits for the reconnect.
    every = len(TILES) + sum(len(names) for _, _, names in ANALYTICS_TILES)
    assert page.locator('.tile[data-state="reconnect_required"]').count() == \
        page.locator(".tile").count() == every
    page.click("#connect-button")
    assert page.locator("#connect-dialog input[type=password]").is_visible()


def test_reconnect_then_sync_ends_with_figures(app, page, monkeypatch):
    """The page's flow: paste a key, the app stores it and starts a sync, figures appear.

    connect_client and start_background_sync are stood in for (Stripe is not reachable
    here); test_reconnect_end_to_end_on_the_sandbox runs the real ones."""
    received: dict = {}

    def connect(client_id, raw_key, **kwargs):
        received["key"] = raw_key
        with ConnectionStore.from_settings() as store:
            _connect(store, client_id, "Initech", "new1")

    def sync_later(client_id):
        def run():
            time.sleep(1.0)
            now = datetime.now(UTC)
            seed_report_data(warehouse_from_settings(), client_id, now, seed=3, currency="jpy")
            with ConnectionStore.from_settings() as store:
                store.record_sync(client_id, now)
        threading.Thread(target=run, daemon=True).start()

    monkeypatch.setattr("pipelines.instance.connect_and_register", connect)
    monkeypatch.setattr("apps.launch.start_background_sync", sync_later)
    page.goto(f"{app.url}/clients/initech")
    page.click("#connect-button")
    page.fill("#connect-dialog input[name=secret_key]", NEW_KEY)
    page.click("#connect-dialog button[type=submit]")
    page.wait_for_selector("#sync-started")
    assert "sync_started=" in page.url and NEW_KEY not in page.url
    page.wait_for_url(lambda url: "sync_started" not in url, timeout=30_000)
    page.wait_for_selector('.tile[data-widget="gross_volume"][data-state="ok"]')
    _tiles_match_widgets(page, "initech")
    assert received["key"] == NEW_KEY
    assert NEW_KEY not in page.content()


def _reporting_in_definitions() -> bool:
    try:
        from pipelines.definitions import ASSETS
    except Exception:  # noqa: BLE001 - any import problem means: not wired yet
        return False
    return any(getattr(a, "node_def", None) is not None and a.node_def.name == "reporting_tables"
               for a in ASSETS)


@pytest.mark.slow
@pytest.mark.skipif(not _reporting_in_definitions(),
                    reason="pipelines/definitions.py does not load assets.reporting yet, so a "
                    "sync builds no reporting tables")
def test_reconnect_end_to_end_on_the_sandbox(home, sandbox_factory, browser, monkeypatch):
    """The revoked demo client: real connect_client against the sandbox, a real background
    sync through Dagster, and the figures on the page at the end."""
    from engine.credentials import check_client, connect_client
    from sandbox import SandboxWorld
    from sandbox.context import AccountSpec

    server = sandbox_factory([AccountSpec("initech", charges=60, customers=12,
                                          subscriptions=6, currency="jpy")])
    world: SandboxWorld = server.world
    account = world.accounts["initech"]
    connect_client("initech", account.secret_key, name="Initech", api_base=server.base_url)
    world.revoke_key("initech")
    check_client("initech")
    fresh_key = "rk_test_" + "Fresh" * 6
    world.register_restricted(fresh_key, account, frozenset())
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])))
    with AppServer() as app:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{app.url}/clients/initech")
        assert page.locator("#reconnect").is_visible()
        page.click("#connect-button")
        page.fill("#connect-dialog input[name=secret_key]", fresh_key)
        page.click("#connect-dialog button[type=submit]")
        page.wait_for_selector("#sync-started")
        page.wait_for_url(lambda url: "sync_started" not in url, timeout=240_000)
        page.wait_for_selector('.tile[data-widget="gross_volume"][data-state="ok"]')
        _tiles_match_widgets(page, "initech")
        context.close()
