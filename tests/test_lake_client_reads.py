"""Widgets on DuckLake read a per-process copy of the client's rows (issue 21), and that copy
is never behind the lake: after a sync and build, a recorded failure, the nightly maintenance
(which expires the snapshots the copy was made at) or a purge, the next read shows it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from engine.lake.client_copy import copies_of
from engine.reporting.build import build_reporting_tables
from engine.sync import SETTLE_SECONDS
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import run_widget
from sandbox import AccountSpec
from tests.sync_helpers import run_sync
from tests.test_ducklake import lake  # noqa: F401  # the fixture: a fresh DuckLake

pytestmark = pytest.mark.postgres


def _successful_payments(warehouse):
    now = datetime.now(UTC)
    return run_widget("acme", "successful_payments", warehouse=warehouse, now=now,
                      start=(now - timedelta(days=3650)).date(), end=now.date())


def _sync_and_build(server, warehouse) -> None:
    time.sleep(SETTLE_SECONDS + 0.5)  # a sync leaves the last seconds' objects to the next
    assert run_sync(server, "acme", warehouse).errors == []
    with warehouse.writer() as conn:
        build_reporting_tables(conn, "acme")


def test_a_cached_reader_sees_every_change_to_the_lake(lake, sandbox_factory):  # noqa: F811
    server = sandbox_factory([AccountSpec("acme", charges=200, customers=20,
                                          subscriptions=10)], seed=4)
    warehouse = warehouse_from_settings()
    _sync_and_build(server, warehouse)
    first = _successful_payments(warehouse)
    assert first.state == "ok" and first.value > 0
    copies = copies_of(warehouse._database())
    copied = copies.tables_copied

    # Nothing changed: served from the copy, nothing copied again.
    assert _successful_payments(warehouse).value == first.value
    assert copies.tables_copied == copied

    made = server.world.add_charges("acme", 30)
    succeeded = sum(1 for charge in made if charge["status"] == "succeeded")
    assert succeeded > 0
    _sync_and_build(server, warehouse)
    with warehouse.reader() as conn:  # what a reader of the lake itself sees
        stored = conn.execute("SELECT count(*) FROM reporting.payments WHERE client_id = "
                              "'acme' AND status = 'succeeded'").fetchone()[0]
    assert _successful_payments(warehouse).value == first.value + succeeded, stored

    # A failed sync recorded after the build: the figures say they may be out of date.
    warehouse.record_failure("acme", "Stripe said no.")
    assert _successful_payments(warehouse).state == "stale"

    # Maintenance expires the snapshots the copy was made at; more charges land after it.
    more = server.world.add_charges("acme", 20)
    _sync_and_build(server, warehouse)
    warehouse.maintain(keep_snapshots=timedelta(0), keep_unused_files=timedelta(0))
    total = first.value + succeeded + sum(1 for c in more if c["status"] == "succeeded")
    assert _successful_payments(warehouse).value == total

    assert warehouse.purge_client("acme") > 0
    assert _successful_payments(warehouse).state == "no_data"
