"""Widgets on DuckLake read a per-process copy of the client's rows (issue 21), and that copy
is never behind the lake: after a sync and build, a recorded failure, the nightly maintenance
(which expires the snapshots the copy was made at) or a purge, the next read shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.lake.client_copy import copies_of
from engine.reporting.build import build_reporting_tables
from engine.streams import STREAMS
from engine.sync import sync_client
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import run_widget
from sandbox import AccountSpec
from tests.sync_helpers import account_for
from tests.test_ducklake import lake  # noqa: F401  # the fixture: a fresh DuckLake

pytestmark = pytest.mark.postgres
# Each later account is listed in full under the same client: its charges replace the rows
# before (those it does not list are flagged deleted), so the figures change every time.
ACCOUNTS = [AccountSpec("acme", charges=200, customers=20, subscriptions=10),
            AccountSpec("more", charges=40, customers=5, subscriptions=2),
            AccountSpec("again", charges=30, customers=5, subscriptions=2)]


def _successful_payments(warehouse):
    now = datetime.now(UTC)
    return run_widget("acme", "successful_payments", warehouse=warehouse, now=now,
                      start=(now - timedelta(days=3650)).date(), end=now.date())


def _in_the_lake(warehouse) -> int:
    """What a reader of the lake itself counts: the figure the copy must show."""
    with warehouse.reader() as conn:
        return conn.execute("SELECT count(*) FROM reporting.payments WHERE client_id = 'acme' "
                            "AND status = 'succeeded'").fetchone()[0]


def _sync_and_build(server, account: str, warehouse) -> None:
    report = sync_client(account_for(server, account, client_id="acme"), warehouse, STREAMS,
                         full_refresh=account != "acme")
    assert report.errors == []
    with warehouse.writer() as conn:
        build_reporting_tables(conn, "acme")


def test_a_cached_reader_sees_every_change_to_the_lake(lake, sandbox_factory):  # noqa: F811
    server = sandbox_factory(ACCOUNTS, seed=4)
    warehouse = warehouse_from_settings()
    _sync_and_build(server, "acme", warehouse)
    first = _successful_payments(warehouse)
    assert first.state == "ok" and first.value == _in_the_lake(warehouse) > 0
    copies = copies_of(warehouse._database())
    copied = copies.tables_copied

    # Nothing changed: served from the copy, nothing copied again.
    assert _successful_payments(warehouse).value == first.value
    assert copies.tables_copied == copied

    _sync_and_build(server, "more", warehouse)
    second = _successful_payments(warehouse).value
    assert second == _in_the_lake(warehouse) != first.value

    # A failed sync recorded after the build: the figures say they may be out of date.
    warehouse.record_failure("acme", "Stripe said no.")
    assert _successful_payments(warehouse).state == "stale"

    # More rows land, then maintenance expires the snapshots the copy was made at.
    _sync_and_build(server, "again", warehouse)
    warehouse.maintain(keep_snapshots=timedelta(0), keep_unused_files=timedelta(0))
    assert _successful_payments(warehouse).value == _in_the_lake(warehouse) != second

    assert warehouse.purge_client("acme") > 0
    assert _successful_payments(warehouse).state == "no_data"
