"""All widgets of one client on DuckLake against the DuckDB file, with many clients stored.

    python -m benchmarks.lake_widgets [--clients 1000] [--sampled 20] [--repeat 4]
                                      [--charges 2000] [--maintain]

One sandbox account is synced (`sync_client`) and its reporting tables built, into a DuckDB
file and into a DuckLake (PostgreSQL catalog from support/postgres_server.py, local data
folder). Its rows in every `reporting.*` and `meta.*` table are then copied under
`--clients − 1` other client ids, one commit per client (as each client's own build would add
its files, inlined rows and snapshots; far cheaper than 1,000 syncs and builds). `--maintain`
runs the nightly maintenance on the lake before measuring (files merged, snapshots expired).

Measured in this process, as the web app serves the report page: `run_widgets` (every catalog
widget, one call) for `--sampled` clients, each read first cold (this process has no copy of
the client yet) and then `--repeat` times warm; on the lake also read directly through
`Warehouse.reader` (each query through the catalog, as before issue 21) for a few clients.
Prints one markdown table; results are in benchmarks/README.md ("Widgets on DuckLake").
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import AbstractContextManager, ExitStack
from datetime import timedelta

import duckdb

from benchmarks.lake_cost import _lake, served_with_home
from engine.lake.client_copy import close_copies
from engine.lake.warehouse import LakeWarehouse
from engine.reporting.build import build_reporting_tables
from engine.streams import STREAMS
from engine.stripe_api import StripeAccount
from engine.sync import sync_client
from engine.warehouse import Warehouse, in_transaction
from engine.warehouse_factory import open_warehouse
from reports.widgets import run_widgets
from sandbox import AccountSpec, SandboxWorld

SOURCE = "c0000"


class _DirectLake(LakeWarehouse):
    """The lake read as before issue 21: every widget query through the catalog."""

    def client_reader(self, client_id: str) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self.reader()


def _clone(warehouse: Warehouse, clients: int) -> float:
    """The source client's reporting rows and sync records copied under other ids, one commit
    per client. Not its `stripe.*` rows: widgets never read them (each table has its own file
    list in the catalog), and 1,000 copies of raw JSON would be ~20 GB."""
    started = time.perf_counter()
    with warehouse.writer() as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT DISTINCT table_schema || '.' || table_name FROM information_schema.columns "
            "WHERE column_name = 'client_id' AND table_schema IN ('reporting', 'meta') "
            "AND table_catalog = current_database() "
            "AND table_name NOT IN (SELECT view_name FROM duckdb_views())").fetchall()]
        for n in range(1, clients):
            in_transaction(conn, lambda n=n: [conn.execute(
                f"INSERT INTO {table} SELECT * REPLACE (? AS client_id) "
                f"FROM {table} WHERE client_id = ?", [f"c{n:04d}", SOURCE]) for table in tables])
            if n % 100 == 0:
                print(f"  {warehouse!r}: {n} clients", flush=True)
    return time.perf_counter() - started


def _timed(client: str, warehouse: Warehouse) -> float:
    started = time.perf_counter()
    results = run_widgets(client, warehouse=warehouse)
    if not any(r.state == "ok" for r in results):
        raise RuntimeError(f"{client}: no widget answered ({results[0].message})")
    return time.perf_counter() - started


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 \
        else values[0]


def _measure(name: str, warehouse: Warehouse, sampled: list[str], repeat: int
             ) -> tuple[str, list[float]]:
    cold, warm = [], []
    for client in sampled:
        cold.append(_timed(client, warehouse))
        warm.extend(_timed(client, warehouse) for _ in range(repeat))
    every = cold + warm
    row = (f"| {name} | {len(every)} | {statistics.median(every) * 1000:.0f} | "
           f"{_p95(every) * 1000:.0f} | {statistics.median(cold) * 1000:.0f} | "
           f"{_p95(cold) * 1000:.0f} | {statistics.median(warm) * 1000:.0f} | "
           f"{_p95(warm) * 1000:.0f} | {os.getloadavg()[0]:.1f} |")
    print(row, flush=True)
    return row, every


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sampled", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--charges", type=int, default=2000)
    parser.add_argument("--maintain", action="store_true")
    args = parser.parse_args(argv)
    world = SandboxWorld.generate(seed=11, specs=[AccountSpec(
        SOURCE, charges=args.charges, customers=args.charges // 10,
        subscriptions=args.charges // 15, livemode=True)])
    step = max(1, args.clients // args.sampled)
    sampled = [f"c{n:04d}" for n in range(0, args.clients, step)][:args.sampled]
    rows = ["| warehouse | calls | p50 ms | p95 ms | cold p50 ms | cold p95 ms | warm p50 ms "
            "| warm p95 ms | load |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    with ExitStack() as stack:
        server, root = served_with_home(stack, world, "lake-widgets-")
        targets = {"DuckDB file": str(root / "warehouse.duckdb"), "DuckLake": _lake(stack, root)}
        opened: dict[str, Warehouse] = {}
        for name, target in targets.items():
            warehouse = opened[name] = open_warehouse(target)
            warehouse.ensure_schema()
            account = StripeAccount(SOURCE, world.accounts[SOURCE].secret_key,
                                    api_base=server.base_url, requests_per_second=2000)
            report = sync_client(account, warehouse, STREAMS)
            if report.errors:
                raise RuntimeError(f"{name}: the sync failed: {report.errors}")
            with warehouse.writer() as conn:
                build_reporting_tables(conn, SOURCE)
            seconds = _clone(warehouse, args.clients)
            print(f"{name}: {args.clients} clients stored in {seconds:.0f} s", flush=True)
        lake = opened["DuckLake"]
        file_row, on_file = _measure("DuckDB file", opened["DuckDB file"], sampled, args.repeat)
        rows.append(file_row)
        passes = ["as synced", "after the nightly maintenance"] if args.maintain else ["as synced"]
        for label in passes:
            if label != "as synced":
                started = time.perf_counter()
                lake.maintain(keep_snapshots=timedelta(0), keep_unused_files=timedelta(0))
                print(f"maintenance: {time.perf_counter() - started:.1f} s", flush=True)
            # A new process's copies: the web app's after a restart.
            close_copies()
            row, on_lake = _measure(f"DuckLake {label}, client copies (now)", lake, sampled,
                                    args.repeat)
            direct_row, _ = _measure(
                f"DuckLake {label}, every query through the catalog (before)",
                _DirectLake(targets["DuckLake"]), sampled[:3], 1)
            rows += [row, direct_row]
            print(f"{label}: lake p95 ÷ file p95 = {_p95(on_lake) / _p95(on_file):.2f}×")
    print(f"\n{args.clients} clients, {args.charges} charges each\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
