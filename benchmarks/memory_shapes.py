"""Peak RSS of one client's first sync, for the account shapes of issue 21.

    python -m benchmarks.memory_shapes [--shapes charges,subscriptions,wide_invoices]
        [--charges N] [--subscription-charges N] [--wide-charges N] [--lines N]
        [--chunk-mb 0,16] [--streams invoices]

Each shape is one sandbox account, served in this process (benchmarks/lake_cost.py's
helper), synced into a fresh DuckDB file by `sync_client` in a child process
(benchmarks/sync_process.py): its `ru_maxrss` is the figure, imports included. Shapes:

- `charges`: charges only (`--charges`, default 1,000,000).
- `subscriptions`: subscription-heavy, every stream and the balance: one subscription per
  15 charges and invoices every billing period (`--subscription-charges`, default 40,000,
  so 2,666 subscriptions, the size whose reporting build once ran out of memory).
- `wide_invoices`: the same shape with `--lines` (default 60) items on every subscription,
  so as many lines on every invoice (~70 KB of JSON an invoice; `--wide-charges`, default
  20,000).

`--chunk-mb` lists the raw-JSON budgets per chunk to run each shape with (0: chunks end
at 5,000 objects only, as before issue 21; none given: the engine's default). Prints one
markdown table; results are in benchmarks/README.md ("Peak memory by account shape").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path

from benchmarks.lake_cost import served_with_home
from benchmarks.sync_process import SyncJob, SyncRun, run_sync
from engine.streams import STREAMS
from sandbox import AccountSpec, SandboxWorld

CLIENT = "shape"


def _spec(shape: str, args: argparse.Namespace) -> tuple[AccountSpec, tuple[str, ...], bool]:
    """The account, the streams synced and whether the balance is too."""
    if shape == "charges":
        return (AccountSpec(CLIENT, charges=args.charges, customers=40, subscriptions=30,
                            livemode=True), ("charges",), False)
    if shape == "subscriptions":
        n = args.subscription_charges
        return (AccountSpec(CLIENT, charges=n, customers=n // 10, subscriptions=n // 15,
                            livemode=True), tuple(s.name for s in STREAMS), True)
    if shape == "wide_invoices":
        n = args.wide_charges
        return (AccountSpec(CLIENT, charges=n, customers=n // 10, subscriptions=n // 15,
                            items_per_subscription=args.lines, livemode=True),
                tuple(s.name for s in STREAMS), True)
    raise SystemExit(f"unknown shape {shape!r}: use charges, subscriptions or wide_invoices")


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def _row(shape: str, spec: AccountSpec, chunk_mb: float | None, run: SyncRun,
         load_before: str, load_after: str) -> str:
    budget = ("5,000 objects only" if chunk_mb == 0 else
              f"5,000 objects or {chunk_mb:g} MB" if chunk_mb else "engine default")
    return (f"| {shape} | {spec.charges:,} | {spec.subscriptions:,} | {budget} | "
            f"{run.objects:,} | {run.sync_s:.1f} | {run.peak_rss_mb:.0f} | "
            f"{load_before} → {load_after} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="charges,subscriptions,wide_invoices")
    parser.add_argument("--charges", type=int, default=1_000_000)
    parser.add_argument("--subscription-charges", type=int, default=40_000)
    parser.add_argument("--wide-charges", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=60)
    parser.add_argument("--streams", default="",
                        help="comma-separated streams to sync instead of the shape's own")
    parser.add_argument("--chunk-mb", default="",
                        help="comma-separated budgets in MB; 0 = by count only")
    args = parser.parse_args(argv)
    budgets: list[float | None] = (
        [float(b) for b in args.chunk_mb.split(",")] if args.chunk_mb else [None])
    rows = ["| shape | charges | subscriptions | chunk ends at | objects | sync s "
            "| peak RSS MB | load (1 min) |", "|---|--:|--:|---|--:|--:|--:|---|"]
    for shape in args.shapes.split(","):
        spec, streams, balance = _spec(shape, args)
        if args.streams:  # one stream alone, to take a peak apart
            streams, balance = tuple(args.streams.split(",")), False
        world = SandboxWorld.generate(seed=3, specs=[spec])
        with ExitStack() as stack:
            server, root = served_with_home(stack, world, "memory-shapes-")
            for budget in budgets:
                target = root / f"warehouse-{budget}.duckdb"
                before = _load()
                run = run_sync(SyncJob(
                    CLIENT, world.accounts[CLIENT].secret_key, server.base_url, target,
                    streams=streams, requests_per_second=2000, include_balance=balance,
                    chunk_mb=budget))
                if run.errors:
                    raise RuntimeError(f"{shape}: the sync failed: {run.errors}")
                rows.append(_row(shape, spec, budget, run, before, _load()))
                print(rows[-1], flush=True)
                for leftover in root.glob(f"warehouse-{budget}.duckdb*"):
                    if leftover.is_dir():
                        shutil.rmtree(leftover)
                    else:
                        leftover.unlink()
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent).stdout.strip()
    print(f"\ncode {revision}\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
