"""Reporting builds of different clients side by side on one DuckLake, against one at a time.

    python -m benchmarks.lake_writers [--clients 16] [--rounds 2] [--workers 1,2] [--maintain]

N small sandbox accounts (30 charges, 10 subscriptions and their invoices) are synced into a
DuckLake whose catalog is a throwaway PostgreSQL server (support/postgres_server.py); then for
each worker count W, W processes rebuild the reporting tables of N/W clients each, `rounds`
times over. DuckLake refuses a commit to a table another writer changed since the
transaction began, and every build deletes and inserts in the same ten tables, so builders
that overlap conflict: the table shows what that costs (wall time, commits run again, the
slowest build). `--maintain` then runs the nightly maintenance (`LakeWarehouse.maintain`)
and one builder once more: what the files every build leaves behind cost. Prints one
markdown row per pass; results in benchmarks/README.md ("Writers side by side on DuckLake").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

from benchmarks.lake_cost import _lake, served_with_home
from benchmarks.sync_process import SyncJob, run_sync
from engine.lake.maintenance import files_and_snapshots
from engine.lake.warehouse import LakeWarehouse
from engine.streams import STREAMS
from engine.warehouse_factory import open_warehouse
from sandbox import AccountSpec, SandboxWorld

BUILDER = """
import json, os, sys, time
from engine.reporting.build import build_reporting_tables
from engine.lake import retrying
from engine.warehouse_factory import open_warehouse
job = json.loads(sys.stdin.read())
warehouse, durations = open_warehouse(job["target"]), []
for _ in range(job["rounds"]):
    for client in job["clients"]:
        started = time.perf_counter()
        with warehouse.writer() as conn:
            build_reporting_tables(conn, client)
        durations.append(time.perf_counter() - started)
print(json.dumps({"durations": durations, "retried": retrying.retried_commits}))
"""


def _files(target: str) -> int:
    with open_warehouse(target).reader() as conn:
        return files_and_snapshots(conn)[0]


def _build_side_by_side(target: str, clients: list[str], workers: int, rounds: int) -> str:
    files = _files(target)
    started = time.perf_counter()
    builders = []
    for worker in range(workers):
        job = {"target": target, "clients": clients[worker::workers], "rounds": rounds}
        builder = subprocess.Popen([sys.executable, "-c", BUILDER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        assert builder.stdin
        builder.stdin.write(json.dumps(job))
        builder.stdin.close()
        builders.append(builder)
    results = [json.loads(builder.stdout.read()) for builder in builders]  # type: ignore[union-attr]
    for builder in builders:
        builder.wait()
    wall = time.perf_counter() - started
    durations = sorted(d for result in results for d in result["durations"])
    retried = sum(result["retried"] for result in results)
    return (f"| {workers} | {files:,} | {len(durations)} | {wall:.1f} | "
            f"{durations[len(durations) // 2]:.2f} | {durations[-1]:.2f} | {retried} | "
            f"{os.getloadavg()[0]:.1f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="comma-separated")
    parser.add_argument("--maintain", action="store_true")
    args = parser.parse_args(argv)
    clients = [f"client{n:03d}" for n in range(args.clients)]
    world = SandboxWorld.generate(seed=7, specs=[
        AccountSpec(name, charges=30, customers=10, subscriptions=10) for name in clients])
    rows = ["| builders | lake files at start | builds | wall s | median build s "
            "| slowest build s | commits run again | load |", "|--:|--:|--:|--:|--:|--:|--:|--:|"]
    with ExitStack() as stack:
        server, root = served_with_home(stack, world, "lake-writers-")
        target = _lake(stack, root)
        for name in clients:
            synced = run_sync(SyncJob(name, world.accounts[name].secret_key, server.base_url,
                                      Path(target), streams=tuple(s.name for s in STREAMS),
                                      requests_per_second=2000, include_balance=True))
            if synced.errors:
                raise SystemExit(f"{name}: the sync failed: {synced.errors}")
        for workers in (int(w) for w in args.workers.split(",")):
            rows.append(_build_side_by_side(target, clients, workers, args.rounds))
        if args.maintain:
            done = LakeWarehouse(target).maintain(timedelta(0), timedelta(0))
            rows.append(f"| maintenance: {done.seconds:.1f} s | {done.files_before:,} → "
                        f"{done.files_after:,} | | | | | | |")
            rows.append(_build_side_by_side(target, clients, 1, args.rounds))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
