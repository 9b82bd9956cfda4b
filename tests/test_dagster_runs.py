"""Real Dagster runs: clients as partitions, recorded in the instance, side by side."""

from __future__ import annotations

import time

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from apps.launch import run_client_syncs
from assets.partitions import CLIENTS_PARTITION_NAME
from engine.credentials import connect_client
from engine.sync import SETTLE_SECONDS
from engine.warehouse_factory import warehouse_from_settings
from sandbox import AccountSpec


def test_two_clients_sync_at_once_and_both_runs_are_recorded(home, sandbox_factory):
    server = sandbox_factory(
        [AccountSpec("acme", charges=1200), AccountSpec("globex", charges=900)]
    )
    for name in ("acme", "globex"):
        connect_client(name, server.world.accounts[name].secret_key)

    outcomes = run_client_syncs(["acme", "globex"], parallel=2)

    assert [o.success for o in outcomes] == [True, True], [o.message for o in outcomes]
    assert outcomes[0].assets["stripe/charges"]["rows_inserted"] == 1200
    assert outcomes[1].assets["stripe/charges"]["rows_inserted"] == 900
    instance = DagsterInstance.get()
    assert sorted(instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME)) == ["acme", "globex"]
    runs = instance.get_runs()
    assert len(runs) == 2 and all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    assert {r.tags["dagster/partition"] for r in runs} == {"acme", "globex"}
    with warehouse_from_settings().reader() as conn:
        per_client = dict(conn.execute(
            "SELECT client_id, count(*) FROM stripe.charges GROUP BY ALL").fetchall())
    assert per_client == {"acme": 1200, "globex": 900}


def test_a_key_accepted_without_a_permission_syncs_everything_else(home, sandbox_factory):
    from apps.launch import materialize_client
    from engine.connection_store import ConnectionStore

    server = sandbox_factory([AccountSpec("acme", charges=300)])
    key = server.world.accounts["acme"].restricted_key(without={"refunds"})
    outcome = connect_client("acme", key)
    assert [m.stream for m in outcome.missing] == ["refunds"]

    result = materialize_client("acme")

    assert result.success, result.message
    # Materialized as complete as the key allows (so the reporting tables build), saying why.
    assert "rak_refund_read" in result.assets["stripe/refunds"]["skipped"]
    assert result.assets["stripe/refunds"]["rows_inserted"] == 0
    assert any(key.startswith("reporting/") for key in result.assets)
    assert result.assets["stripe/charges"]["rows_inserted"] == 300
    assert ConnectionStore.from_settings().get("acme").state.value == "connected"


def test_sync_of_chosen_streams_rebuilds_reporting(home, sandbox_factory):
    from apps.launch import materialize_client

    server = sandbox_factory([AccountSpec("acme", charges=120)])
    connect_client("acme", server.world.accounts["acme"].secret_key)

    outcome = materialize_client("acme", streams=["charges"])

    assert outcome.success, outcome.message
    stripe_assets = {k for k in outcome.assets if k.startswith("stripe/")}
    assert stripe_assets == {"stripe/charges", "stripe/balance"}
    assert any(k.startswith("reporting/") for k in outcome.assets)


SMALL = {"charges": 30, "customers": 8, "subscriptions": 6, "products": 3, "history_days": 40}


def _sync_runs(instance: DagsterInstance, launched_by: str | None = None) -> list:
    from pipelines.jobs import LAUNCHED_BY_TAG, SYNC_JOB_NAME

    tags = {LAUNCHED_BY_TAG: launched_by} if launched_by else None
    return list(instance.get_runs(filters=RunsFilter(job_name=SYNC_JOB_NAME, tags=tags)))


def test_cli_and_demo_syncs_are_stripe_sync_job_runs_tagged_with_their_launcher(
        home, sandbox_factory, monkeypatch):
    from apps.launch import LAUNCHER_ENV

    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    connect_client("acme", server.world.accounts["acme"].secret_key)
    monkeypatch.delenv(LAUNCHER_ENV, raising=False)

    cli, = run_client_syncs(["acme"], full_refresh=True)
    time.sleep(SETTLE_SECONDS + 1)
    server.world.add_charges("acme", 2)  # something new: the demo's sync gets a run
    time.sleep(SETTLE_SECONDS + 1)
    demo, = run_client_syncs(["acme"], launched_by="demo")

    assert cli.success and demo.success, (cli.message, demo.message)
    instance = DagsterInstance.get()
    runs = {run.run_id: run for run in instance.get_runs()}
    assert {r.job_name for r in runs.values()} == {"stripe_sync_job"}
    for outcome, launcher in ((cli, "cli"), (demo, "demo")):
        run = runs[outcome.run_id]
        assert run.tags["stripe_reports/launched_by"] == launcher
        assert run.tags["dagster/partition"] == "acme"
    # The options travel as the job's typed config, which the UI shows with the run.
    config = runs[cli.run_id].run_config["ops"]["stripe_sync"]["config"]
    assert config["full_refresh"] is True
    assert cli.assets["stripe/charges"]["full_refresh"] != "no (incremental)"
    assert demo.assets["stripe/charges"]["full_refresh"] == "no (incremental)"


@pytest.mark.slow
def test_the_report_pages_reconnect_sync_is_a_run_launched_by_the_web(home, sandbox_factory):
    from apps.launch import start_background_sync

    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    connect_client("acme", server.world.accounts["acme"].secret_key)

    from pipelines.instance import get_instance

    start_background_sync("acme")  # what the page's Connect does: a CLI sync in the background

    instance = get_instance()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = [r for r in _sync_runs(instance, "web") if r.is_finished]
        if runs:
            break
        time.sleep(0.5)
    log = (home / "sync-acme.log").read_text(errors="replace")
    assert runs, f"no finished web run; the sync's log:\n{log}"
    assert runs[0].status == DagsterRunStatus.SUCCESS, log
    assert runs[0].tags["dagster/partition"] == "acme"


@pytest.mark.slow
def test_every_stream_alone_and_together_syncs_with_its_child_tables(home, sandbox_factory):
    from apps.launch import materialize_client
    from engine.streams import STREAMS

    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    connect_client("acme", server.world.accounts["acme"].secret_key)
    choices = [[spec.name] for spec in STREAMS]
    choices += [["charges", "customers", "subscriptions", "refunds"],
                [spec.name for spec in STREAMS]]

    for streams in choices:
        outcome = materialize_client("acme", streams=streams)

        assert outcome.success, (streams, outcome.message)
        expected = {"stripe/balance"}
        for spec in STREAMS:
            if spec.name in streams:
                expected |= {f"stripe/{spec.table}"}
                expected |= {f"stripe/{child.table}" for child in spec.children}
        assert {k for k in outcome.assets if k.startswith("stripe/")} == expected, streams
        # A stream synced for the first time builds the reporting tables; streams synced
        # before, with nothing new since, are only observed (checked) and build nothing.
        quiet = all(meta.get("changed") is False for key, meta in outcome.assets.items()
                    if key.startswith("stripe/"))
        assert quiet != any(k.startswith("reporting/") for k in outcome.assets), streams
    with warehouse_from_settings().reader() as conn:
        items = conn.execute("SELECT count(*) FROM stripe.subscription_items").fetchone()[0]
    assert items > 0


def test_run_config_streams_that_disagree_with_the_selection_fail_clearly(
        home, sandbox_factory):
    """As from the Dagster launchpad: the whole job selected, its config naming one stream."""
    from dagster import RunConfig

    from assets.stripe_assets import SyncConfig
    from pipelines.client_runs import _failure_text
    from pipelines.definitions import defs
    from pipelines.instance import get_instance, register_clients

    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    connect_client("acme", server.world.accounts["acme"].secret_key)
    instance = get_instance()
    register_clients(instance, ["acme"])

    result = defs.resolve_job_def("stripe_sync_job").execute_in_process(
        run_config=RunConfig(ops={"stripe_sync": SyncConfig(streams=["subscriptions"])}),
        instance=instance, partition_key="acme", raise_on_error=False)

    assert not result.success
    assert _failure_text(result).startswith(
        "The run's config names the streams subscriptions but the run selects charges, ")
    with warehouse_from_settings().reader() as conn:
        assert conn.execute("SELECT count(*) FROM stripe.charges").fetchone()[0] == 0
