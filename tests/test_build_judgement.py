"""Whether a client's reporting tables must be built again: judged from what every write
records (meta.stripe_writes), not by scanning the stripe.* tables. A change landed after
the last build, by whatever path, makes the tables it feeds due; nothing else does."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from engine.reporting.build import build_reporting_tables, tables_due
from engine.sync import SETTLE_SECONDS
from engine.warehouse import flag_unseen_as_deleted
from sandbox import AccountSpec
from tests.sync_helpers import new_warehouse, run_sync


def _due(warehouse, client_id: str) -> set[str]:
    with warehouse.reader() as conn:
        return {table.name for table in tables_due(conn, client_id)}


def _build(warehouse, client_id: str) -> None:
    with warehouse.writer() as conn:
        build_reporting_tables(conn, client_id, record_inputs=True)


def test_a_write_after_the_build_makes_only_the_tables_it_feeds_due(sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=40, customers=8, subscriptions=4)])
    warehouse = new_warehouse(tmp_path)
    assert _due(warehouse, "acme") and not run_sync(server, "acme", warehouse).errors
    _build(warehouse, "acme")
    assert _due(warehouse, "acme") == set()

    # A sync that lands new charges, and no build after it (the run died, say).
    server.world.add_charges("acme", 2)
    time.sleep(SETTLE_SECONDS + 1)
    assert run_sync(server, "acme", warehouse).streams["charges"].inserted == 2
    due = _due(warehouse, "acme")
    assert {"payments", "daily_revenue", "freshness"} <= due
    assert "subscription_mrr" not in due
    _build(warehouse, "acme")
    assert _due(warehouse, "acme") == set()

    # A sync with nothing new writes nothing the judgement reads.
    time.sleep(SETTLE_SECONDS + 1)
    assert run_sync(server, "acme", warehouse).nothing_new
    assert _due(warehouse, "acme") == set()

    # A full listing that flags rows as gone from Stripe changes its table too.
    with warehouse.writer() as conn:
        assert flag_unseen_as_deleted(conn, "customers", "acme", datetime.now(UTC)) == 8
    assert "customer_counts" in _due(warehouse, "acme")


def test_another_clients_writes_leave_a_client_built(sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=20), AccountSpec("beta", charges=20)])
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    _build(warehouse, "acme")
    run_sync(server, "beta", warehouse)
    assert _due(warehouse, "acme") == set()
    assert _due(warehouse, "beta")
