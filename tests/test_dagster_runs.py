"""Real Dagster runs: clients as partitions, recorded in the instance, side by side."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRunStatus

from assets.partitions import CLIENTS_PARTITION_NAME
from engine.credentials import connect_client
from engine.warehouse import Warehouse
from pipelines.sync import sync_clients
from sandbox import AccountSpec


def test_two_clients_sync_at_once_and_both_runs_are_recorded(home, sandbox_factory):
    server = sandbox_factory(
        [AccountSpec("acme", charges=1200), AccountSpec("globex", charges=900)]
    )
    for name in ("acme", "globex"):
        connect_client(name, server.world.accounts[name].secret_key)

    outcomes = sync_clients(["acme", "globex"], parallel=2)

    assert [o.success for o in outcomes] == [True, True], [o.message for o in outcomes]
    assert outcomes[0].assets["stripe/charges"]["rows_inserted"] == 1200
    assert outcomes[1].assets["stripe/charges"]["rows_inserted"] == 900
    instance = DagsterInstance.get()
    assert sorted(instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME)) == ["acme", "globex"]
    runs = instance.get_runs()
    assert len(runs) == 2 and all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    assert {r.tags["dagster/partition"] for r in runs} == {"acme", "globex"}
    with Warehouse.from_settings().reader() as conn:
        per_client = dict(conn.execute(
            "SELECT client_id, count(*) FROM stripe.charges GROUP BY ALL").fetchall())
    assert per_client == {"acme": 1200, "globex": 900}


def test_a_key_accepted_without_a_permission_syncs_everything_else(home, sandbox_factory):
    from engine.connection_store import ConnectionStore
    from pipelines.sync import materialize_client

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
    from pipelines.sync import materialize_client

    server = sandbox_factory([AccountSpec("acme", charges=120)])
    connect_client("acme", server.world.accounts["acme"].secret_key)

    outcome = materialize_client("acme", streams=["charges"])

    assert outcome.success, outcome.message
    stripe_assets = {k for k in outcome.assets if k.startswith("stripe/")}
    assert stripe_assets == {"stripe/charges", "stripe/balance"}
    assert any(k.startswith("reporting/") for k in outcome.assets)
