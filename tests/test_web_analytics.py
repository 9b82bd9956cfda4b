"""Issue 22's widgets on the staff report page, in real Chromium, for clients synced from
the sandbox through `stripe-reports sync`: the subscription analytics, disputes,
breakdowns and cohorts sections show the widgets' own figures (the CLI's JSON, formatted),
a restricted key's missing data says it cannot be shown instead of a figure, and the page
still fits a 360 px phone."""

from __future__ import annotations

import importlib.util
import json
from datetime import timedelta
from pathlib import Path

import pytest

from apps.web.agency_report import ANALYTICS_TILES, BREAKDOWNS
from apps.web.client_report import client_locale, figure
from apps.web.share import share_token
from engine.connection_store import ConnectionStore
from reports.widgets import OK, format_value, run_widgets
from sandbox import AccountSpec
from tests.test_credentials import run_cli
from tests.web_server import CHROMIUM, AppServer, chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's Chromium is not installed (scripts/system-deps.sh)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the playwright package is not installed"),
]

# The demo's acme (sandbox/demo.py): 400 days of history, so every section has figures.
SHOP = AccountSpec("shop", charges=2000, customers=300, subscriptions=180, products=6,
                   currency="usd", price_intervals=("month", "year"), failure_rate=0.05)
TILE_WIDGETS = [name for _, _, names in ANALYTICS_TILES for name in names]


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """The shop connected with its Secret key (`full`) and with a key that may not read
    subscriptions (`no-subs`), both synced by `stripe-reports sync --all`; the app serves."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("analytics")
    clients = root / "clients.yaml"
    clients.write_text("clients: {}\n")
    for name, value in {"STRIPE_REPORTS_HOME": root / "home", "DAGSTER_HOME": root / "dh",
                        "STRIPE_REPORTS_SECRET": "test-master-passphrase-not-a-stripe-key",
                        "STRIPE_REPORTS_CLIENTS_FILE": clients}.items():
        mp.setenv(name, str(value))
    for name in ("STRIPE_REPORTS_WAREHOUSE", "STRIPE_REPORTS_CONNECTIONS_URL",
                 "STRIPE_REPORTS_DAGSTER_STORAGE_URL", "STRIPE_REPORTS_LAKE_DATA_PATH",
                 "STRIPE_REPORTS_ADMIN_PASSWORD_HASH", "STRIPE_REPORTS_PUBLIC_URL"):
        mp.delenv(name, raising=False)
    (root / "home").mkdir()
    from sandbox import SandboxServer, SandboxWorld

    world = SandboxWorld.generate(seed=7, specs=[SHOP])
    sandbox = SandboxServer(world).start()
    mp.setenv("STRIPE_API_BASE", sandbox.base_url)
    shop = world.accounts["shop"]
    keys = (f"full\t{shop.secret_key}\n"
            f"no-subs\t{shop.restricted_key(without={'subscriptions'})}\n")
    connected = run_cli("connect", "--bulk", stdin=keys)
    assert connected.returncode == 0, connected.stdout + connected.stderr
    done = run_cli("sync", "--all", "--parallel", "2", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    with AppServer() as app, chromium() as browser:
        yield app, browser
    sandbox.stop()
    mp.undo()


def _open(synced, client: str, width: int = 1280):
    app, browser = synced
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{app.url}/clients/{client}")
    page.wait_for_selector("#subscription-analytics")
    return context, page


def _results(client: str) -> dict:
    with ConnectionStore.from_settings() as store:
        return {r.widget: r for r in run_widgets(client, store=store)}


def test_the_nrr_tile_shows_the_cli_figure(synced):
    cli = run_cli("widget", "full", "nrr", "--format", "json")
    assert cli.returncode == 0, cli.stderr
    nrr = json.loads(cli.stdout)
    assert nrr["state"] == OK and nrr["value"] is not None
    context, page = _open(synced, "full")
    tile = page.locator('#subscription-analytics .tile[data-widget="nrr"]')
    assert tile.locator(".tile-value").inner_text() == format_value(nrr["value"], "percent")
    tile.locator("summary").click()  # the reader can see how it is computed
    assert nrr["definition"] in tile.locator(".definition").inner_text()
    context.close()


def test_every_new_section_shows_the_widgets_figures(synced):
    results = _results("full")
    context, page = _open(synced, "full")
    shown = 0
    for name in TILE_WIDGETS:
        result = results[name]
        tile = page.locator(f'.analytics .tile[data-widget="{name}"]')
        assert tile.get_attribute("data-state") == result.state, name
        if result.state == OK:
            text = tile.locator(".tile-value").inner_text()
            assert text == format_value(result.value, result.unit, result.currency), name
            shown += 1
    # A year of a busy shop: most figures are there (a period may have no trial ending).
    assert shown >= len(TILE_WIDGETS) - 2, shown
    assert page.locator("#disputes h2").inner_text() == "Disputes"
    for name in BREAKDOWNS:
        result = results[name]
        assert result.state == OK and result.rows, name
        table = page.locator(f'#breakdowns [data-widget="{name}"] table tbody tr')
        assert table.count() == len(result.rows), name
    plan = results["mrr_by_plan"].rows[0]
    first = page.locator('#breakdowns [data-widget="mrr_by_plan"] tbody tr').first
    assert first.locator('[data-column="mrr"]').inner_text() == format_value(
        plan["mrr"], "money", "usd")
    cohorts = results["cohort_retention"]
    grid = page.locator("#cohorts table.cohort-grid")
    assert grid.locator("tbody tr").count() == len({r["cohort"] for r in cohorts.rows})
    month0 = [r for r in cohorts.rows if r["month"] == 0][0]
    row = grid.locator(f'tbody tr[data-cohort="{month0["cohort"]}"]')
    assert row.locator('td[data-month="0"]').inner_text() == "100.0%"
    context.close()


def test_a_key_that_cannot_read_subscriptions_says_so_instead_of_a_figure(synced):
    context, page = _open(synced, "no-subs")
    tile = page.locator('#subscription-analytics .tile[data-widget="nrr"]')
    assert tile.get_attribute("data-state") == "no_data"
    assert tile.locator(".tile-value").inner_text() == "—"
    assert tile.locator(".tile-blocked").inner_text() == (
        "Net revenue retention cannot be shown: it is computed from the account's "
        "subscriptions, which the Stripe key connected for these reports is not allowed to "
        "read.")
    cohorts = page.locator('#cohorts [data-widget="cohort_retention"]')
    assert "cannot be shown" in cohorts.inner_text()
    assert cohorts.locator("table").count() == 0
    # What the key may read is still shown.
    disputes = page.locator('#disputes .tile[data-widget="disputes"]')
    assert disputes.get_attribute("data-state") == _results("no-subs")["disputes"].state
    context.close()


def test_the_page_fits_a_360_px_phone(synced, tmp_path):
    context, page = _open(synced, "full", width=360)
    page.wait_for_load_state("networkidle")
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{widths[0]} px wide in a {widths[1]} px window"
    assert page.locator("#cohorts table.cohort-grid").is_visible()
    page.screenshot(path=str(tmp_path / "analytics-360.png"), full_page=True)
    context.close()



def test_the_client_report_shows_retention_without_operator_text(synced):
    """The share page keeps to a subset, NRR and GRR, in the client's words: no definition,
    and a figure the key may not read is "Not available", not the staff message."""
    app, browser = synced
    results = _results("full")
    page = browser.new_context(viewport={"width": 360, "height": 900}).new_page()
    for client in ("full", "no-subs"):
        with ConnectionStore.from_settings() as store:
            token = share_token(store, client, timedelta(days=1))
        page.goto(f"{app.url}/r/{token}")
        for name in ("nrr", "grr"):
            tile = page.locator(f'.tile[data-widget="{name}"]')
            if client == "full":
                assert tile.locator(".tile-value").inner_text() == figure(
                    results[name].value, "percent", "usd", client_locale("full"))
            else:
                assert tile.locator(".tile-change").inner_text() == "Not available"
        text = page.locator("body").inner_text()
        assert "cannot be shown" not in text and "ChartMogul" not in text
        assert "How it's computed" not in text
    page.context.close()
