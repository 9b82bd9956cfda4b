"""Comparisons people choose and the client's time zone, in real Chromium against the app
under uvicorn: choosing "same period last year" on the staff report changes what every tile
is compared with; a share link and a PDF made with it show it; a Europe/Berlin client's page
says its time zone and puts payments around midnight and across a DST change on its days."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime

import pytest
from pypdf import PdfReader

from engine.connection_store import ConnectionStore
from engine.settings import load_settings
from engine.warehouse_factory import warehouse_from_settings
from tests.test_client_timezone import CHARGES
from tests.test_reporting_support import build, charge, land
from tests.web_server import AppServer, chromium

PERIOD = "start=2025-11-01&end=2025-11-30"


def _connect(client: str, now: datetime) -> None:
    with ConnectionStore.from_settings() as store:
        store.save_connection(client, secret_key="sk_test_" + "c" * 24,
                              account_id=f"acct_{client}", livemode=False)
        store.record_sync(client, now)


@pytest.fixture()
def served(home):
    """acme: 300 in November 2025, 100 in October 2025, 200 in November 2024 (USD).
    berlin (Europe/Berlin): the payments of tests/test_client_timezone.py."""
    load_settings().clients_file.write_text(
        "clients:\n  acme:\n    name: Acme Corp\n  berlin:\n    timezone: Europe/Berlin\n")
    now = datetime.now(UTC)
    warehouse = warehouse_from_settings()
    land(warehouse, "acme", "charges", [charge("2025-11-10", 30_000),
                                        charge("2025-10-10", 10_000),
                                        charge("2024-11-10", 20_000)])
    land(warehouse, "berlin", "charges", [charge(at, amount) for at, amount in CHARGES])
    for client in ("acme", "berlin"):
        build(warehouse, client, now)
        _connect(client, now)
    with AppServer() as server:  # loopback, no password: the staff console without sign-in
        yield server


def _text(page, selector: str) -> str:
    """An element's text with Babel's thin and narrow spaces as plain ones."""
    return re.sub(r"[\u2009\u202f\xa0]", " ", page.locator(selector).first.inner_text())


def _gross_tile(page) -> str:
    return " ".join(page.locator('[data-widget="gross_volume"]').first.inner_text().split())


def test_same_period_last_year_is_chosen_on_the_page_and_kept_in_links_and_pdf(served):
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{served.url}/clients/acme?{PERIOD}")
        assert "vs $100.00" in _gross_tile(page)  # the previous period: October
        # The 30 days before: 2 to 31 October.
        assert "previous period (2 – 31 Oct 2025)" in page.locator("#compared-with").inner_text()
        with page.expect_navigation():
            page.select_option("#compare", "previous_year")
        assert "compare=previous_year" in page.url
        assert "vs $200.00" in _gross_tile(page)  # November 2024
        assert page.locator("#compared-with").inner_text() == (
            "compared with same period last year (1 – 30 Nov 2024)")
        # A period preset keeps the choice.
        assert "compare=previous_year" in page.locator(".preset").first.get_attribute("href")

        # The share link made from the panel the report links to carries the choice.
        page.click("#panel-link")
        assert page.locator("#share-compare").input_value() == "previous_year"
        page.click("#make-share-link")
        link = page.locator("#share-link").input_value()
        assert link.endswith("?compare=previous_year")
        client = browser.new_page()  # the client: no staff session needed either way
        client.goto(link.replace(link.split("/r/")[0], served.url) + f"&{PERIOD}")
        assert _text(client, "#compared-with") == (
            "Compared with the same period last year (Nov 1 – 30, 2024)")
        assert "vs $200.00" in _gross_tile(client)
        assert client.locator("#compare").input_value() == "previous_year"

        # The PDF the report page links to is printed with the same comparison.
        pdf_href = page.goto(f"{served.url}/clients/acme?{PERIOD}&compare=previous_year") \
            and page.locator("#download-pdf").get_attribute("href")
        assert "compare=previous_year" in pdf_href
        response = page.request.get(served.url + pdf_href, timeout=240_000)
        assert response.status == 200, response.text()
        text = " ".join("\n".join(p.extract_text() for p in PdfReader(
            io.BytesIO(response.body())).pages).split())
        assert "Compared with the same period last year" in text
        assert "vs $200.00" in text and "vs $100.00" not in text


def test_a_bad_comparison_is_one_clear_message(served):
    with chromium() as browser:
        page = browser.new_page()
        response = page.goto(f"{served.url}/clients/acme?{PERIOD}&compare=last_decade")
        assert response.status == 400
        assert "--compare must be one of previous_period, previous_year" in page.content()


def test_a_berlin_clients_page_has_its_days_and_says_its_zone(served):
    with chromium() as browser:
        page = browser.new_page()
        # 27 October 2024, the day clocks went back, and the day after, in Berlin: 40 + 80.
        page.goto(f"{served.url}/clients/berlin?start=2024-10-27&end=2024-10-28")
        assert page.locator("#period").inner_text().startswith(
            "27 – 28 Oct 2024 (Europe/Berlin)")
        assert _gross_tile(page).startswith("Gross volume $120.00")  # UTC days: 80
        charts = json.loads(page.locator("#chart-data").inner_text())
        revenue = next(c for c in charts if c["name"] == "revenue_over_time")
        assert list(zip(revenue["labels"], revenue["data"]["gross"], strict=True)) == [
            ("2024-10-27", 40.0), ("2024-10-28", 80.0)]
        times = page.locator("[data-payment] td[data-label=Date]").all_inner_texts()
        assert sorted(times) == ["27 Oct 2024 00:30", "28 Oct 2024 00:30"]  # Berlin clocks
        # Around midnight in summer: 00:30 on 10 June is 10 June, 00:00 on the 11th the 11th.
        page.goto(f"{served.url}/clients/berlin?start=2024-06-10&end=2024-06-10")
        assert _gross_tile(page).startswith("Gross volume $3.00")
        # The client's own page says the zone too, with no operator text around it.
        page.goto(f"{served.url}/clients/berlin/client-report?start=2024-03-31&end=2024-04-01")
        period = _text(page, "#period")
        assert re.fullmatch(r"Mar 31 – Apr 1, 2024 \(Europe/Berlin\)( · USD)?", period), period
        assert _gross_tile(page).startswith("Gross volume $30.00")  # 10 + 20
        assert "acct_" not in page.content() and "stripe-reports" not in page.content()
