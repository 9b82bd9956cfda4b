"""Real Dagster runs: clients as partitions, recorded in the instance, side by side."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRunStatus

from assets.partitions import CLIENTS_PARTITION_NAME
from pipelines.sync import sync_clients
from resources.credentials import connect_client
from resources.warehouse import Warehouse
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
