"""A sync the apps start (CLI, report page, demo) is checked first, as a batch run checks its
clients (issue 21): nothing new makes no Dagster run, only the record that the client was
checked; anything new gets the client's run, which takes over what the check found."""

from __future__ import annotations

import time

from dagster import DagsterInstance, RunsFilter
from dagster._core.event_api import PartitionKeyFilter

from apps.launch import run_client_syncs
from assets.client_health import BALANCE_KEY, CREDENTIAL_CHECK_KEY
from engine.credentials import connect_client
from engine.freshness import read_built_at
from engine.streams import STREAMS_BY_NAME
from engine.sync import SETTLE_SECONDS
from engine.warehouse_factory import warehouse_from_settings
from pipelines.jobs import SYNC_JOB_NAME
from sandbox import AccountSpec
from tests.sync_helpers import compare_with_source, source_objects

SMALL = {"charges": 30, "customers": 6, "subscriptions": 4, "products": 3, "history_days": 40}


def _sync_runs(instance: DagsterInstance) -> list:
    return instance.get_runs(filters=RunsFilter(job_name=SYNC_JOB_NAME))


def test_a_lone_sync_with_nothing_new_is_recorded_as_checked_without_a_run(
        home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    connect_client("acme", server.world.accounts["acme"].secret_key)
    [first] = run_client_syncs(["acme"])
    assert first.success and first.run_id and not first.checked_without_run, first.message
    instance = DagsterInstance.get()
    time.sleep(SETTLE_SECONDS + 1)
    server.reset_stats()
    started = time.time()

    [quiet] = run_client_syncs(["acme"])

    assert quiet.success and quiet.checked_without_run and quiet.run_id is None
    assert [run.run_id for run in _sync_runs(instance)] == [first.run_id]
    assert quiet.assets["stripe/balance"]["api_requests"] == sum(
        server.stats()["by_account"].values()) <= 5
    # Dagster shows the check: an observation of the client's balance, by whom, and the
    # credential check's pass, both now.
    observation = instance.fetch_observations(BALANCE_KEY, limit=1).records[0]
    assert observation.asset_observation.partition == "acme"
    assert observation.asset_observation.metadata["launched_by"].value == "cli"
    assert observation.timestamp > started
    verdict = instance.event_log_storage.get_asset_check_execution_history(
        CREDENTIAL_CHECK_KEY, limit=1, partition_filter=PartitionKeyFilter(key="acme"))[0]
    assert verdict.event.dagster_event.asset_check_evaluation_data.passed
    assert verdict.event.timestamp > started
    # Its figures count as checked now: no stale warning for a client with nothing new.
    with warehouse_from_settings().reader() as conn:
        assert read_built_at(conn, "acme").timestamp() > started


def test_changes_after_a_quiet_check_get_a_run_that_lands_them_once(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    connect_client("acme", server.world.accounts["acme"].secret_key)
    [first] = run_client_syncs(["acme"])
    assert first.success, first.message
    time.sleep(SETTLE_SECONDS + 1)
    assert run_client_syncs(["acme"])[0].checked_without_run
    payments = _payments()
    world = server.world
    customers = sorted(source_objects(server, "acme", STREAMS_BY_NAME["customers"]))
    world.add_charges("acme", 4)
    world.update_customer("acme", customers[0], email="renamed@example.com")
    world.delete_customer("acme", customers[1])
    time.sleep(SETTLE_SECONDS + 1)  # a sync leaves the last seconds' objects to the next
    server.reset_stats()

    [changed] = run_client_syncs(["acme"])

    assert changed.success and changed.run_id and not changed.checked_without_run
    assert changed.assets["stripe/charges"]["rows_inserted"] == 4
    # The run took over the check's sync: the account was asked once, not twice.
    assert server.stats()["by_account_path"][
        (world.accounts["acme"].account_id, "/v1/account")] == 1
    assert compare_with_source(server, "acme", warehouse_from_settings(),
                               deleted=[customers[1]]) == []
    assert _payments() == payments + 4  # the reporting tables were built again


def _payments() -> int:
    with warehouse_from_settings().reader() as conn:
        return conn.execute("SELECT count(*) FROM reporting.payments").fetchone()[0]
