"""No work for no change, in real Dagster runs: a client with nothing new is observed, not
materialized, its reporting tables are not rebuilt, and it still counts as checked now."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from apps.launch import materialize_client
from engine.credentials import connect_client
from engine.freshness import freshness_problem, read_built_at
from engine.sync import SETTLE_SECONDS
from engine.warehouse_factory import warehouse_from_settings
from sandbox import AccountSpec

SMALL = {"charges": 40, "customers": 8, "subscriptions": 6, "products": 3, "history_days": 40}


def _steps(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """step -> its end (STEP_SUCCESS, STEP_SKIPPED, ...)."""
    ends = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event and event.step_key and event.event_type_value in (
                "STEP_SUCCESS", "STEP_SKIPPED", "STEP_FAILURE"):
            ends[event.step_key] = event.event_type_value
    return ends


def _payments(conn) -> int:
    return conn.execute("SELECT count(*) FROM reporting.payments").fetchone()[0]


def test_a_client_with_nothing_new_is_observed_and_its_tables_are_not_rebuilt(
        home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    connect_client("acme", server.world.accounts["acme"].secret_key)
    first = materialize_client("acme")
    assert first.success, first.message
    warehouse = warehouse_from_settings()
    with warehouse.reader() as conn:
        built_first = read_built_at(conn, "acme")
    instance = DagsterInstance.get()
    charges = AssetKey(["stripe", "charges"])
    materialized = instance.get_latest_materialization_event(charges)
    time.sleep(SETTLE_SECONDS + 1)

    quiet = materialize_client("acme")

    assert quiet.success, quiet.message
    # Nothing materialized again: the stream was observed (checked, nothing new) ...
    assert instance.get_latest_materialization_event(charges).run_id == materialized.run_id
    observation = instance.fetch_observations(charges, limit=1).records[0]
    assert observation.run_id == quiet.run_id
    assert quiet.assets["stripe/charges"]["rows_inserted"] == 0
    assert not any(key.startswith("reporting/") for key in quiet.assets)
    # ... the reporting step did no work ...
    steps = _steps(instance, quiet.run_id)
    assert steps["stripe_sync"] == "STEP_SUCCESS"
    assert steps["reporting_tables"] == "STEP_SKIPPED"
    assert instance.get_run_by_id(quiet.run_id).status == DagsterRunStatus.SUCCESS
    # ... and the client still counts as checked now: fresh, built_at moved on.
    with warehouse.reader() as conn:
        assert read_built_at(conn, "acme") > built_first
        assert freshness_problem(conn, "acme", datetime.now(UTC)) is None
        payments = _payments(conn)

    # Something new: materialized and built again, the new charge in the figures.
    server.world.add_charges("acme", 3)
    time.sleep(SETTLE_SECONDS + 1)
    changed = materialize_client("acme")
    assert changed.success, changed.message
    assert changed.assets["stripe/charges"]["rows_inserted"] == 3
    assert instance.get_latest_materialization_event(charges).run_id == changed.run_id
    assert _steps(instance, changed.run_id)["reporting_tables"] == "STEP_SUCCESS"
    # Only the tables new charges feed: subscriptions did not change, nor their MRR.
    built = {key for key in changed.assets if key.startswith("reporting/")}
    assert {"reporting/payments", "reporting/daily_revenue", "reporting/freshness"} <= built
    assert "reporting/subscription_mrr" not in built and "reporting/mrr_daily" not in built
    with warehouse.reader() as conn:
        assert _payments(conn) == payments + 3


def test_a_turned_calendar_day_rebuilds_even_without_changes(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    connect_client("acme", server.world.accounts["acme"].secret_key)
    assert materialize_client("acme").success
    warehouse = warehouse_from_settings()
    with warehouse.writer() as conn:  # the last build was yesterday
        conn.execute("UPDATE reporting.freshness SET built_at = built_at - INTERVAL 1 DAY")
    time.sleep(SETTLE_SECONDS + 1)

    outcome = materialize_client("acme")

    assert outcome.success, outcome.message
    assert _steps(DagsterInstance.get(), outcome.run_id)["reporting_tables"] == "STEP_SUCCESS"
    from engine.reporting.tables import REPORTING_TABLES  # every table: the day moved on

    assert {key for key in outcome.assets if key.startswith("reporting/")} == {
        f"reporting/{table.name}" for table in REPORTING_TABLES}
