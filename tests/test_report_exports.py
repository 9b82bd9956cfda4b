"""The report page's downloads over a real server: a CSV per chart and table equal to
`widget --format csv`, and the PDF (Chromium) with the page's figures."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from pypdf import PdfReader

from apps.cli import main
from engine.connection_store import ConnectionStore
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import format_value, run_widget
from tests.test_reporting_support import seed_report_data
from tests.test_web_browser import pytestmark  # noqa: F401 - Chromium needed too
from tests.web_server import AppServer


@pytest.fixture()
def app(home):
    now = datetime.now(UTC)
    seed_report_data(warehouse_from_settings(), "acme", now)
    with ConnectionStore.from_settings() as store:
        store.save_connection("acme", secret_key="sk_test_" + "k" * 24, account_id="acct_1",
                              livemode=False, name="Acme Corp")
        store.record_sync("acme", now)
    with AppServer() as server:
        yield server


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=180) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_each_chart_and_table_has_its_csv(app, capsys):
    end = datetime.now(UTC).date()
    start = end - timedelta(days=40)
    status, _, page = _get(f"{app.url}/clients/acme?start={start}&end={end}")
    assert status == 200
    for widget in ("revenue_over_time", "mrr_over_time", "recent_payments"):
        link = f"/clients/acme/widgets/{widget}.csv?start={start}&amp;end={end}"
        assert link.encode() in page, widget
        status, kind, body = _get(app.url + link.replace("&amp;", "&"))
        assert status == 200 and kind.startswith("text/csv")
        capsys.readouterr()
        main(["widget", "acme", widget, "--start", str(start), "--end", str(end),
              "--format", "csv"])
        assert body.decode() == capsys.readouterr().out
        assert body.count(b"\n") > 5
    assert _get(f"{app.url}/clients/acme/widgets/nope.csv")[0] == 404
    assert _get(f"{app.url}/clients/acme/widgets/mrr.csv?start=2025-13-01")[0] == 400
    assert _get(f"{app.url}/clients/nobody/widgets/mrr.csv")[0] == 404


def test_the_page_offers_its_pdf(app):
    status, _, page = _get(f"{app.url}/clients/acme")
    assert b'id="download-pdf"' in page
    status, kind, body = _get(f"{app.url}/clients/acme/report.pdf?paper=Letter")
    assert status == 200 and kind == "application/pdf" and body.startswith(b"%PDF")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages)
    gross = run_widget("acme", "gross_volume")
    assert format_value(gross.value, gross.unit, gross.currency) in text
    assert _get(f"{app.url}/clients/acme/report.pdf?paper=A3")[0] == 400
