"""The Dagster UI after `stripe-reports demo`, in a real browser (Debian's Chromium, Playwright).

The Dagster web server (what `dagster dev` serves, without the daemon, whose hourly schedule
could start runs mid-test) shows the demo's instance; the test reads what an operator would:
the failed client on a stripe asset's partitions tab, the credential and freshness checks
per client, the runs list, and the list of clients needing a reconnect with their steps.
Screenshots land in build/screenshots/dagster-*.png.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from assets.client_health import CREDENTIAL_CHECK
from tests.test_web_browser import SCREENSHOTS
from tests.web_server import CHROMIUM, chromium, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLIENTS = ("acme", "globex", "initech")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's Chromium is not installed (scripts/system-deps.sh)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the playwright package is not installed"),
]


def _wait_for(url: str, server: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the web server exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the web server did not answer at {url}:\n{log.read_text()[-3000:]}")


@pytest.fixture()
def dagster_ui(home: Path, tmp_path: Path) -> Iterator[str]:
    """The demo's instance served by the Dagster web server on a free port."""
    demo = subprocess.run([str(BIN / "stripe-reports"), "demo"], cwd=home,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr[-3000:]
    port = free_port()
    log = tmp_path / "dagster-webserver.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace_config/workspace.yaml",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own group: the code server stops with it
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", server, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


@pytest.fixture()
def ui_page(dagster_ui: str):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-GB")
        # The first visit's community dialog may open at any time: skip it whenever it shows.
        page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                 lambda: page.get_by_role("button", name="Skip").click())
        yield dagster_ui, page


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")


def _tick(page, only: str | None, statuses: tuple[str, ...]) -> dict[str, int]:
    """Tick the status `only` (None: none) and untick the others; how many times each
    client's name then shows (a page may also name every partition outside the list)."""
    for status in statuses:
        label = page.locator("label").filter(has_text=re.compile(rf"^{status} \("))
        if label.locator("input").is_checked() != (status == only):
            label.click()
    page.wait_for_timeout(500)
    return {c: sum(e.is_visible() for e in page.get_by_text(c, exact=True).all())
            for c in CLIENTS}


def _shown_partitions(page, only: str, statuses: tuple[str, ...]) -> list[str]:
    """The partition keys listed when only the status `only` is ticked."""
    outside = _tick(page, None, statuses)
    shown = _tick(page, only, statuses)
    return [c for c in CLIENTS if shown[c] > outside[c]]


def _screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dagster-{name}.png"))


def test_the_dagster_ui_shows_each_clients_health_after_the_demo(ui_page):
    base, page = ui_page

    _open(page, f"{base}/assets/stripe/charges?view=partitions")
    page.get_by_text("Failed (1)").wait_for()
    statuses = ("Failed", "Materialized", "Materializing", "Missing")
    assert page.get_by_text("Materialized (2)").is_visible()
    assert _shown_partitions(page, "Failed", statuses) == ["initech"]
    _screenshot(page, "partitions-failed")
    assert _shown_partitions(page, "Materialized", statuses) == ["acme", "globex"]
    _screenshot(page, "partitions-materialized")

    # stripe/balance has two checks (credentials, reconciliation): open the credential one.
    _open(page, f"{base}/assets/stripe/balance?view=checks&checkDetail={CREDENTIAL_CHECK}")
    page.get_by_role("tab", name="Partitions").last.click()
    page.get_by_text("Passed (2)").wait_for()
    check_statuses = ("Execution Failed", "Failed", "In Progress", "Missing", "Skipped",
                      "Passed")
    assert page.get_by_text("Failed (1)", exact=True).is_visible()
    assert _shown_partitions(page, "Failed", check_statuses) == ["initech"]
    _screenshot(page, "credential-check")

    # Freshness warns for initech only: its sync failed, so its figures are not current.
    _open(page, f"{base}/assets/reporting/freshness?view=checks")
    page.get_by_role("tab", name="Partitions").last.click()
    page.get_by_text("Passed (2)").wait_for()
    assert _shown_partitions(page, "Failed", check_statuses) == ["initech"]
    _screenshot(page, "freshness-check")

    _open(page, f"{base}/runs")
    page.get_by_text("stripe_sync_job").first.wait_for()
    text = page.inner_text("body")
    _screenshot(page, "runs")
    rows = [row for row in text.split("View\n") if "stripe_sync_job" in row]
    for client in CLIENTS:
        demo = [r for r in rows
                if f"partition: {client}" in r and "stripe_reports/launched_by: demo" in r]
        assert len(demo) == 1, f"{client}: {demo or rows}"
        assert ("Failure" if client == "initech" else "Success") in demo[0], demo[0]

    _open(page, f"{base}/assets/stripe/clients_needing_reconnect?view=events")
    page.get_by_text("1 client(s) need a new Stripe key.").wait_for()
    table = page.locator("table").filter(has_text="since").last
    rows = [r.inner_text() for r in table.locator("tr").all()]
    _screenshot(page, "reconnect-list")
    assert [r.split()[0] for r in rows] == ["client", "initech"], rows
    assert "Stripe rejected the key sk_test_…" in rows[1]
    assert "Run stripe-reports connect initech" in rows[1] and "1. " in rows[1], rows[1]
