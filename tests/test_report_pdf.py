"""`stripe-reports report --pdf`: the report page printed by Debian's Chromium, from a client
synced from the sandbox through Dagster; the PDF's text holds the figures the widget JSON
gives, formatted as the page shows them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader

from apps.cli import main
from apps.launch import materialize_client
from engine.credentials import connect_client
from reports.widgets import format_value, get_widget
from sandbox import AccountSpec

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parent.parent / "build" / "pdf"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed "
                       "(scripts/system-deps.sh)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the playwright package is not installed"),
]


@pytest.fixture()
def synced(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", charges=150, customers=30, subscriptions=20,
                                          history_days=90)])
    connect_client("acme", server.world.accounts["acme"].secret_key, name="Acme Corp")
    outcome = materialize_client("acme")
    assert outcome.success, outcome.message
    return server


def _widget_text(capsys, name: str, *period: str) -> str:
    """The figure as `widget --format json` gives it, formatted as the page shows it."""
    capsys.readouterr()
    assert main(["widget", "acme", name, "--format", "json", *period]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "ok", data
    return format_value(data["value"], get_widget(name).unit, data["currency"])


def _size(reader: PdfReader) -> tuple[float, float]:
    box = reader.pages[0].mediabox
    return float(box.width), float(box.height)


def _text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def test_report_pdf_holds_the_widget_figures(synced, tmp_path, capsys):
    end = datetime.now(UTC).date() - timedelta(days=1)
    period = ["--start", (end - timedelta(days=44)).isoformat(), "--end", end.isoformat()]
    target = tmp_path / "acme.pdf"

    assert main(["report", "acme", "--pdf", str(target), *period]) == 0

    text = _text(target)
    for name in ("gross_volume", "mrr", "net_volume"):
        shown = _widget_text(capsys, name, *period)
        assert shown.startswith("$") and shown in text, (name, shown)
    assert "Acme Corp" in text
    reader = PdfReader(target)
    assert _size(reader) == pytest.approx((595, 842), abs=2)  # A4 in points
    # Charts are drawn into the PDF as images or paths: a page with charts is not text only.
    assert len(reader.pages) >= 2
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(target, OUTPUT / "report-a4.pdf")
    if shutil.which("pdftoppm"):  # the pages as images, to look at
        subprocess.run(["pdftoppm", "-png", "-r", "60", str(target), str(OUTPUT / "page")],
                       check=True)


def test_letter_paper_and_a_bad_period(synced, tmp_path, capsys):
    target = tmp_path / "letter.pdf"
    assert main(["report", "acme", "--pdf", str(target), "--paper", "Letter"]) == 0
    assert _size(PdfReader(target)) == pytest.approx((612, 792), abs=2)  # Letter
    assert _widget_text(capsys, "gross_volume") in _text(target)

    capsys.readouterr()
    bad = tmp_path / "bad.pdf"
    assert main(["report", "acme", "--pdf", str(bad), "--start", "2025-02-30"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2025-02-30" in err and not bad.exists()
    assert main(["report", "nobody", "--pdf", str(bad)]) == 2 and not bad.exists()
