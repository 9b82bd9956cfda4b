"""PostgreSQL gone in the middle of a sync (restarted, crashed): the sync says so in one
line that says what to do, never an SQLAlchemy dump with the SQL, and exits 1."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from engine.user_errors import LOST_DATABASE, lost_database
from engine.warehouse_factory import warehouse_from_settings
from sandbox import AccountSpec
from tests.sync_helpers import compare_with_source
from tests.test_credentials import CLI, run_cli
from tests.test_ducklake import lake  # noqa: F401 (a fixture)

pytestmark = pytest.mark.postgres


def test_postgres_stopped_mid_sync_is_one_clear_line(lake, postgres_server,  # noqa: F811
                                                     sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", charges=600)])
    assert run_cli("connect", "acme",
                   stdin=server.world.accounts["acme"].secret_key).returncode == 0
    server.latency_ms = 1500  # 7 pages of charges, one after the other: over 10 s
    server.reset_stats()
    sync = subprocess.Popen([str(CLI), "sync", "acme", "--full-refresh"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy(), cwd=os.environ["STRIPE_REPORTS_HOME"])
    _wait_until_paging(server, sync)  # the run has started and its first pages are in
    postgres_server.stop()
    try:
        out, err = sync.communicate(timeout=240)
    finally:
        postgres_server.start()
    assert sync.returncode == 1, out + err
    if "acme: FAILED" in out:  # stopped within the client's run
        failure = out.split("acme: FAILED", 1)[1].splitlines()[1:]
        said = [line.strip() for line in failure if line.strip()]
    else:  # stopped before it (a busy machine takes seconds to start): the command's line
        said = [line.removeprefix("error: ") for line in err.splitlines() if line.strip()]
    # Ours, or the DuckLake warehouse's own line when the catalog cannot even be opened.
    assert len(said) == 1 and (said[0] == LOST_DATABASE or said[0].startswith(
        "Could not open the DuckLake warehouse")), out
    for dump in ("[SQL", "Traceback", "psycopg2", "OperationalError", "[parameters"):
        assert dump not in out + err, out + err


def _wait_until_paging(server, sync: subprocess.Popen, pages: int = 20) -> None:
    """Until the sync has asked Stripe for `pages` pages: past its start, amid its writes
    (a fixed sleep landed before the run on a busy machine, after it on an idle one)."""
    deadline = time.monotonic() + 120
    while server.stats()["total"] < pages:
        assert sync.poll() is None and time.monotonic() < deadline, sync.communicate()
        time.sleep(0.05)


def test_a_brief_postgres_restart_mid_sync_is_retried_and_the_sync_succeeds(
        lake, postgres_server, sandbox_factory):  # noqa: F811
    server = sandbox_factory([AccountSpec("acme", charges=600)])
    assert run_cli("connect", "acme",
                   stdin=server.world.accounts["acme"].secret_key).returncode == 0
    server.latency_ms = 1000
    server.reset_stats()
    sync = subprocess.Popen([str(CLI), "sync", "acme", "--full-refresh"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy(), cwd=os.environ["STRIPE_REPORTS_HOME"])
    _wait_until_paging(server, sync)
    postgres_server.stop()
    time.sleep(1)
    postgres_server.start()
    server.latency_ms = 0
    out, err = sync.communicate(timeout=300)

    assert sync.returncode == 0, out + err
    assert compare_with_source(server, "acme", warehouse_from_settings()) == []
    done = run_cli("widget", "acme", "gross_volume", "--format", "json")
    assert json.loads(done.stdout)["state"] == "ok", done.stdout


def test_duckdb_words_for_a_dropped_catalog_mid_transaction_count_as_lost_on_a_lake_only(
        monkeypatch):
    # What a sync stopped on: the catalog connection dropped inside a DuckLake transaction
    # and its next step ran. On a lake that is the lost server (the sync is retried and says
    # so); on the embedded file, with no PostgreSQL, it is not.
    words = ("Invalid Input Error: Attempting to fetch from an unsuccessful query result\n"
             "Error: TransactionContext Error: Current transaction is aborted (please ROLLBACK)")
    monkeypatch.setenv("STRIPE_REPORTS_WAREHOUSE", "ducklake:postgres:dbname=lake host=db")
    assert lost_database("InvalidInputException", words)
    assert not lost_database("StripeError", words)
    monkeypatch.delenv("STRIPE_REPORTS_WAREHOUSE")
    assert not lost_database("InvalidInputException", words)
