"""What the DuckLake warehouse costs against the embedded DuckDB file, for one client's sync.

    python -m benchmarks.lake_cost [--charges N] [--file-only]

One sandbox account (all streams), synced in a child process (benchmarks/sync_process.py)
first into a DuckDB file, then into a DuckLake whose catalog is a throwaway PostgreSQL
server (support/postgres_server.py) and whose data is a local folder; then a no-change
re-sync of each, and every widget once. `--file-only` measures the file alone: run it
under two interpreters to price a DuckDB pin (the DuckLake wheels need DuckDB 1.5.5).
Prints one markdown table; results are in benchmarks/README.md ("DuckLake").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import duckdb

from benchmarks.sync_process import SyncJob, SyncRun, run_sync
from engine.streams import STREAMS
from sandbox import AccountSpec, SandboxServer, SandboxWorld

CLIENT = "bench"


def _lake(stack: ExitStack, root: Path) -> str:
    # The suite's throwaway server: the benchmark needs one, not a product feature.
    from support.postgres_server import running_postgres

    server = stack.enter_context(running_postgres())
    os.environ["PGPASSWORD"] = server.password
    os.environ["STRIPE_REPORTS_LAKE_DATA_PATH"] = str(root / "lake-data")
    return (f"ducklake:postgres:dbname={server.database} host={server.host} "
            f"port={server.port} user=postgres")


def served_with_home(stack: ExitStack, world: SandboxWorld, prefix: str
                     ) -> tuple[SandboxServer, Path]:
    """The world served by a sandbox, and a throwaway folder set as STRIPE_REPORTS_HOME."""
    server = SandboxServer(world).start()
    stack.callback(server.stop)
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    os.environ["STRIPE_REPORTS_HOME"] = str(root / "home")
    return server, root


def _widgets_ms(target: str) -> float:
    # The reporting build is an asset's job; imported here to keep the module light.
    from engine.reporting.build import build_reporting_tables
    from engine.warehouse_factory import open_warehouse
    from reports.widgets import run_widgets

    warehouse = open_warehouse(target)
    with warehouse.writer() as conn:
        build_reporting_tables(conn, CLIENT)
    started = time.perf_counter()
    run_widgets(CLIENT, warehouse=warehouse)
    return (time.perf_counter() - started) * 1000


def _row(name: str, first: SyncRun, again: SyncRun, widgets_ms: float) -> str:
    return (f"| {name} | DuckDB {duckdb.__version__} | {first.objects:,} | {first.sync_s:.2f} | "
            f"{first.objects_per_s:,.0f} | {first.peak_rss_mb:.0f} | {again.sync_s:.2f} | "
            f"{widgets_ms:.0f} |")


def _measure(name: str, target: str, server: SandboxServer) -> str:
    key = server.world.accounts[CLIENT].secret_key
    job = SyncJob(CLIENT, key, server.base_url, Path(target),
                  streams=tuple(s.name for s in STREAMS), requests_per_second=2000,
                  include_balance=True)
    first, again = run_sync(job), run_sync(job)
    if first.errors or again.errors:
        raise RuntimeError(f"{name}: the sync failed: {first.errors + again.errors}")
    return _row(name, first, again, _widgets_ms(target))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charges", type=int, default=20_000)
    parser.add_argument("--file-only", action="store_true")
    args = parser.parse_args(argv)
    world = SandboxWorld.generate(seed=7, specs=[AccountSpec(
        CLIENT, charges=args.charges, customers=args.charges // 10,
        subscriptions=args.charges // 15)])
    rows = ["| warehouse | engine | objects | first sync s | objects/s | peak RSS MB "
            "| no-change re-sync s | all widgets ms |", "|---|---|--:|--:|--:|--:|--:|--:|"]
    with ExitStack() as stack:
        server, root = served_with_home(stack, world, "lake-bench-")
        rows.append(_measure("DuckDB file", str(root / "warehouse.duckdb"), server))
        if not args.file_only:
            rows.append(_measure("DuckLake (PostgreSQL catalog, local data folder)",
                                 _lake(stack, root), server))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
