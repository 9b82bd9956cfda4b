"""The Dagster UI of an agency with 50 clients, as a new operator first reads it (Chromium).

50 clients connected, two keys revoked in Stripe afterwards, and one scheduled-style batch
run syncing eight of them (two fail). The Dagster web server (no daemon) serves the instance;
the test reads what the operator reads: an asset's Automation (the hourly sync schedule),
the reconnect list's check (failed, naming the two clients), the run list (at most 3 tags a
run) and a revoked client's run (its message and steps, no Python stack trace).
Screenshots land in build/screenshots/dagster-ops-*.png.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterRunStatus, RunsFilter

from assets.client_health import RECONNECT_CHECK
from pipelines.jobs import SYNC_JOB_NAME
from sandbox import AccountSpec
from support.batch_runs import run_batch
from tests.test_dagster_browser import BIN, ROOT, _open, _screenshot, _wait_for, pytestmark
from tests.web_server import chromium, free_port

__all__ = ["pytestmark"]  # the browser/slow marks and Chromium skips of the Dagster UI tests

CLIENTS = [f"client{i:02d}" for i in range(50)]
REVOKED = ["client07", "client31"]
BATCH = [*CLIENTS[:6], *REVOKED]
TINY = {"charges": 3, "customers": 2, "subscriptions": 1, "products": 1, "history_days": 10}


@pytest.fixture()
def agency_ui(home: Path, sandbox_factory, tmp_path: Path) -> Iterator[tuple[str, dict]]:
    """50 clients, a batch run of eight (two revoked), the UI on a free port; the runs."""
    from pipelines.instance import connect_and_register, get_instance

    server = sandbox_factory([AccountSpec(name, **TINY) for name in CLIENTS])
    for name in CLIENTS:
        connect_and_register(name, server.world.accounts[name].secret_key,
                             api_base=server.base_url)
    for name in REVOKED:
        server.world.revoke_key(name)
    instance = get_instance()
    batch = run_batch(instance, BATCH)
    assert not batch.success
    runs = {r.tags["dagster/partition"]: r
            for r in instance.get_runs(RunsFilter(job_name=SYNC_JOB_NAME))}
    assert {c for c, r in runs.items() if r.status == DagsterRunStatus.FAILURE} == set(REVOKED)

    port = free_port()
    log = tmp_path / "dagster-webserver.log"
    with log.open("w") as out:
        web = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace_config/workspace.yaml",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", web, log)
        yield f"http://127.0.0.1:{port}", {"batch": batch.run_id, **runs}
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
            web.wait(timeout=10)


def test_an_operator_of_50_clients_sees_schedules_broken_keys_and_short_run_rows(agency_ui):
    base, runs = agency_ui
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-GB")
        page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                 lambda: page.get_by_role("button", name="Skip").click())

        # Automation: the hourly schedule that keeps the asset current, on its own page.
        # (Dagster names a schedule by its cadence there, linking to its page.)
        for asset in ("stripe/charges", "reporting/mrr_daily"):
            _open(page, f"{base}/assets/{asset}")
            schedule = page.locator('a[href*="/schedules/stripe_sync_hourly"]').first
            schedule.wait_for()
            assert schedule.inner_text().strip() == "Every hour"
            details = page.get_by_text("Automation details").first
            assert details.is_visible()
            _screenshot(page, f"ops-automation-{asset.replace('/', '-')}")

        # The reconnect list's check fails, naming both clients.
        _open(page, f"{base}/assets/stripe/clients_needing_reconnect?view=checks")
        page.get_by_text(RECONNECT_CHECK).first.wait_for()
        body = page.inner_text("body")
        _screenshot(page, "ops-reconnect-check")
        assert "Failed" in body, body[-2000:]
        # Oldest failure first: two refused in the same batch may come in either order.
        assert re.search(r"2 client\(s\) need a new Stripe key: "
                         r"(client07, client31|client31, client07)\.", body), body[-2000:]

        # The run list: every row shows at most 3 tags (tall enough to render every run).
        page.set_viewport_size({"width": 1400, "height": 1600})
        _open(page, f"{base}/runs")
        page.get_by_text(SYNC_JOB_NAME).first.wait_for()
        _screenshot(page, "ops-runs")
        page.set_viewport_size({"width": 1400, "height": 4000})
        page.wait_for_timeout(500)
        rows = _run_rows(page)
        assert set(rows) == {runs["batch"][:8], *(runs[c].run_id[:8] for c in BATCH)}, rows
        assert all(len(tags) <= 3 for tags in rows.values()), rows
        client07 = rows[runs["client07"].run_id[:8]]
        assert client07 == ["partition: client07",
                            f"stripe_reports/batch_run_id: {runs['batch']}",
                            "stripe_reports/launched_by: schedule"], client07
        page.set_viewport_size({"width": 1400, "height": 1000})

        # A revoked client's run: the message and steps, no stack trace (the step's failure
        # and the run's, each opened in full as an operator would).
        _open(page, f"{base}/runs/{runs['client07'].run_id}")
        page.get_by_text("Stripe rejected the key").first.wait_for()
        _screenshot(page, "ops-revoked-run")
        messages = [page.inner_text("body")]
        for button in page.get_by_text("View full message").all():
            button.click()
            dialog = page.get_by_role("dialog").last
            dialog.wait_for()
            messages.append(dialog.inner_text())
            dialog.get_by_role("button", name="Done").click()
            dialog.wait_for(state="hidden")
        assert len(messages) >= 2, "the step's failure was not opened in full"
        failure = next(m for m in messages[1:] if "Stripe rejected the key" in m)
        assert "Run `stripe-reports connect client07`" in failure, failure
        for text in messages:
            assert "Stack Trace" not in text and "stripe_assets.py" not in text, text
            assert "dagster._core" not in text, text


def _run_rows(page) -> dict[str, list[str]]:
    """Short run id -> the tags its row of the run list shows (each a tooltip'd tag)."""
    return page.evaluate("""() => {
        const rows = {};
        for (const tags of document.querySelectorAll('[class*="RunRowTags_runTagsWrapper"]')) {
            let cell = tags.parentElement;
            while (cell && !cell.querySelector('a[href^="/runs/"]')) cell = cell.parentElement;
            const id = cell.querySelector('a[href^="/runs/"]').innerText.trim();
            rows[id] = [...tags.querySelectorAll('[data-tooltip]')]
                .map(tag => tag.getAttribute('data-tooltip'));
        }
        return rows;
    }""")
