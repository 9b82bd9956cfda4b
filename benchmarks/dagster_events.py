"""What one Dagster event costs on PostgreSQL storage, with and without kept connections.

    python -m benchmarks.dagster_events [--events 200]

A client's run writes ~100 events (run start, step events, materializations, logs).
Dagster's PostgreSQL storage opens a connection for each unless the process asks it to keep
them (`optimize_for_webserver`, what its webserver does and what `prepare_instance` does in
our run workers). The instance here is a throwaway PostgreSQL server
(support/postgres_server.py); the events are runless materializations. Prints one markdown
table; results in benchmarks/README.md ("Dagster's storage connections").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml
from dagster import AssetMaterialization, DagsterInstance

from pipelines.client_runs import POOL_OVERFLOW, POOL_RECYCLE_SECONDS


def _ms_per_event(instance: DagsterInstance, events: int) -> float:
    started = time.perf_counter()
    for n in range(events):
        instance.report_runless_asset_event(AssetMaterialization(f"probe_{n % 10}"))
    return (time.perf_counter() - started) / events * 1000


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> None:
    from support.postgres_server import running_postgres  # the suite's server, not a feature

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args(argv)
    rows = ["| connections | ms per event | load |", "|---|--:|--:|"]
    with running_postgres() as server, tempfile.TemporaryDirectory() as home:
        config = {"storage": {"postgres": {"postgres_url": server.create_database()}}}
        Path(home, "dagster.yaml").write_text(yaml.safe_dump(config))
        instance = DagsterInstance.from_config(home)
        fresh = _ms_per_event(instance, args.events)
        rows.append(f"| one per event (Dagster's default) | {fresh:.1f} | {_load()} |")
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS,
                                        max_overflow=POOL_OVERFLOW)
        kept = _ms_per_event(instance, args.events)
        rows.append(f"| kept (`prepare_instance`) | {kept:.1f} | {_load()} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
