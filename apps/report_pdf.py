"""The client report as a PDF: the report page printed by headless Chromium.

The page is served by an in-process app on a free loopback port for the time of one print,
so the PDF holds exactly what the page shows (figures, charts, print styles), whoever asks:
`stripe-reports report --pdf`, the page's own PDF link, or a delivery run.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import uvicorn

from apps.web.share import client_report_path
from engine.connection_store import ConnectionStore
from engine.settings import load_settings
from engine.user_errors import CommandError

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Paper -> the printable width in CSS pixels (12 mm margins each side): the page is laid out,
# and its charts drawn, at the width they are printed at.
PAPERS = {"A4": 703, "Letter": 725}
PAGE_TIMEOUT_MS = 120_000
# Only what the printed copy does not need: the period picker, buttons and links to the
# console. The page's own @media print rules do the rest (tiles and rows kept whole).
PRINT_CSS = """
.controls, #connect-button, .dialog, #sync-started { display: none !important; }
.masthead .meta { display: none !important; }  /* the account id and key: not for a client */
a { color: inherit; text-decoration: none; }
"""


def report_path(client_id: str, start: date | str | None, end: date | str | None,
                compare: str | None = None) -> str:
    """The client report's path for a client, period and comparison: a short-lived share
    path, so the printer needs no session whether or not a staff password is set, and
    prints what the client reads (the agency's brand, no operator text)."""
    with ConnectionStore.from_settings() as store:
        return client_report_path(store, client_id, start, end, compare=compare)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _report_server() -> Iterator[str]:
    """The report app under uvicorn on 127.0.0.1, for the length of the block."""
    from apps.web.app import create_app  # Starlette and the templates: only when printing

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(host="127.0.0.1"), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise CommandError("The report page could not be started to print it.", 1)
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def render_pdf(client_id: str, start: date | str | None, end: date | str | None,
               path: Path | str, paper: str = "A4", compare: str | None = None) -> Path:
    """Print CLIENT's report for the period to `path` (A4 or Letter), its figures compared
    as `compare` says (COMPARISONS; default the previous period); returns the path."""
    if paper not in PAPERS:
        raise CommandError(f"Paper {paper!r} is not offered: use A4 or Letter.", 2)
    chromium = load_settings().chromium
    if not Path(chromium).exists():
        raise CommandError(f"Chromium is needed to print the report and was not found at "
                           f"{chromium}: install it (apt-get install chromium), or set "
                           "STRIPE_REPORTS_CHROMIUM to its path.", 1)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _report_server() as base:
        _print(chromium, base + report_path(client_id, start, end, compare), target, paper)
    return target


def _print(chromium: str, url: str, target: Path, paper: str) -> None:
    # Playwright's driver costs a second to load: only a print pays for it.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": PAPERS[paper], "height": 1200})
            response = page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_MS)
            if response is None or response.status >= 400:
                raise CommandError("The report page could not be opened to print it "
                                   f"(HTTP {response.status if response else 'none'}).", 1)
            page.add_style_tag(content=PRINT_CSS)
            # Chart.js draws synchronously once loaded; wait until every canvas says so.
            page.wait_for_function(
                "() => [...document.querySelectorAll('canvas[id^=chart-]')]"
                ".every(c => c.dataset.drawn === 'true')", timeout=PAGE_TIMEOUT_MS)
            page.emulate_media(media="print")
            page.pdf(path=str(target), format=paper, print_background=True,
                     margin={"top": "12mm", "bottom": "12mm", "left": "12mm", "right": "12mm"})
        finally:
            browser.close()
