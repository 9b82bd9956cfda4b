"""A quiet client's check on DuckLake as the lake grows: with and without the catalog indexes.

    .venv/bin/python -m benchmarks.lake_catalog_growth [--steps 100,300,1000] [--sample 8]

In one process, against a PostgreSQL server of its own (support/postgres_server.py) and the
sandbox (no latency: the check's own cost): N accounts of 30 charges are connected and
synced for the first time (4 at once, all streams, their reporting tables built), as a
first cycle leaves them. At each step, a sample of quiet clients is checked as a batch run
checks them (`pipelines.batch_checks.check_client`: the sync with nothing new, the build
judged not due), once without the catalog indexes (engine/lake/catalog_indexes.py) and
once with them. Reported per check: the median wall time, and the catalog rows PostgreSQL
read for it (`pg_stat_user_tables`: rows read by sequential scans, and index scans), which
show where the time grows. A row per step is appended to lake_catalog_growth.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "lake_catalog_growth.md"
FIRST_SYNCS_AT_ONCE = 4


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _environment(root: Path, server: Any) -> str:
    from tests.conftest import TEST_SECRET

    (root / "home").mkdir()
    (root / "clients.yaml").write_text("clients: {}\n")
    database = server.create_database().rsplit("/", 1)[1]
    target = (f"ducklake:postgres:dbname={database} host={server.host} port={server.port} "
              "user=postgres")
    os.environ.pop("STRIPE_REPORTS_CONNECTIONS_URL", None)
    os.environ.update(STRIPE_REPORTS_HOME=str(root / "home"),
                      DAGSTER_HOME=str(root / "home" / "dagster_home"),
                      STRIPE_REPORTS_SECRET=TEST_SECRET,
                      STRIPE_REPORTS_CLIENTS_FILE=str(root / "clients.yaml"),
                      PGPASSWORD=server.password, STRIPE_REPORTS_WAREHOUSE=target,
                      STRIPE_REPORTS_LAKE_DATA_PATH=str(root / "lake-data"))
    return target


def _catalog_reads(dsn: str) -> dict[str, tuple[int, int]]:
    """Per catalog table: rows read by sequential scans, index scans (cumulative)."""
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT relname, seq_tup_read, coalesce(idx_scan, 0) "
                       "FROM pg_stat_user_tables")
        rows = {name: (seq, idx) for name, seq, idx in cursor.fetchall()}
    conn.close()
    return rows


def _catalog_size(dsn: str) -> dict[str, int]:
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        sizes = {}
        for table in ("ducklake_snapshot", "ducklake_data_file", "ducklake_file_column_stats"):
            cursor.execute(f"SELECT count(*) FROM {table}")
            sizes[table] = cursor.fetchone()[0]
    conn.close()
    return sizes


def _set_indexes(dsn: str, built: bool) -> None:
    import psycopg2

    from engine.lake.catalog_indexes import CATALOG_INDEXES, ensure_catalog_indexes
    from engine.lake.turns import TurnSessions

    if built:
        sessions = TurnSessions(dsn, keep=1)
        ensure_catalog_indexes(sessions)
        sessions.close()
        return
    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        for name in CATALOG_INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
    conn.close()


def _measure(clients: list[str], check: Any, dsn: str) -> dict:
    before = _catalog_reads(dsn)
    seconds = []
    for client in clients:
        started = time.perf_counter()
        checked = check(client)
        seconds.append(time.perf_counter() - started)
        assert checked.quiet, (client, checked)
    time.sleep(1.5)  # PostgreSQL's statistics are flushed within a second
    after = _catalog_reads(dsn)
    seq = sum(after[t][0] - before.get(t, (0, 0))[0] for t in after) / len(clients)
    idx = sum(after[t][1] - before.get(t, (0, 0))[1] for t in after) / len(clients)
    return {"median_s": round(statistics.median(seconds), 3),
            "catalog_rows_read_by_scans": round(seq), "index_scans": round(idx, 1)}


def measure(steps: list[int], sample: int) -> list[dict]:
    from support.postgres_server import running_postgres

    root = Path(tempfile.mkdtemp(prefix="lake-growth-"))
    with running_postgres() as server:
        target = _environment(root, server)
        from engine.lake.target import catalog_dsn
        from sandbox import AccountSpec, SandboxServer, SandboxWorld

        dsn = f"{catalog_dsn(target)} password={server.password}"
        names = [f"c{i:04d}" for i in range(max(steps))]
        world = SandboxWorld.generate(seed=1, specs=[AccountSpec(n, charges=30) for n in names])
        sandbox = SandboxServer(world).start()
        os.environ["STRIPE_API_BASE"] = sandbox.base_url
        from engine.credentials import connect_client
        from engine.reporting.build import build_reporting_tables
        from engine.reporting.checked import client_state
        from engine.sync import SETTLE_SECONDS
        from engine.warehouse_factory import warehouse_from_settings
        from pipelines.batch_checks import check_client, mark_checked
        from resources.dagster_resources import StripeResource

        stripe, warehouse = StripeResource(), warehouse_from_settings()
        for name in names:
            connect_client(name, world.accounts[name].secret_key)

        def check(client: str) -> Any:
            return check_client(client, stripe, warehouse, lambda _: None)

        def first_sync(client: str) -> tuple[str, Any]:
            checked = check(client)
            with stripe.store() as store:
                state = client_state(store, client)
            with warehouse.writer() as conn:
                build_reporting_tables(conn, client, state=state, record_inputs=True)
            return client, checked.at

        rows, synced = [], 0
        for step in steps:
            started = time.monotonic()
            with ThreadPoolExecutor(FIRST_SYNCS_AT_ONCE) as pool:
                mark_checked(stripe, warehouse, dict(pool.map(first_sync, names[synced:step])))
            say(f"{step} clients synced ({time.monotonic() - started:.0f} s)")
            synced = step
            time.sleep(SETTLE_SECONDS + 1)  # their events settled: the checks are quiet
            picked = names[:step:max(1, step // sample)][:sample]
            row = {"clients": step, "catalog": _catalog_size(dsn),
                   "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
                   "load": round(os.getloadavg()[0], 1)}
            for label, built in (("without", False), ("with", True)):
                _set_indexes(dsn, built)
                row[label] = _measure(picked, check, dsn)
            say(json.dumps(row))
            rows.append(row)
        sandbox.stop()
    return rows


def append_rows(rows: list[dict]) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(
            "# A quiet client's check as the lake grows (benchmarks/lake_catalog_growth.py)\n\n"
            "| clients | catalog files / statistics rows | check s without / with indexes | "
            "catalog rows read a check, without / with | index scans a check, with | "
            "load | when (UTC) |\n|--:|--:|--:|--:|--:|--:|---|\n")
    with RESULTS.open("a") as results:
        for r in rows:
            w, i, c = r["without"], r["with"], r["catalog"]
            results.write(
                f"| {r['clients']:,} | {c['ducklake_data_file']:,} / "
                f"{c['ducklake_file_column_stats']:,} | {w['median_s']} / {i['median_s']} | "
                f"{w['catalog_rows_read_by_scans']:,} / {i['catalog_rows_read_by_scans']:,} | "
                f"{i['index_scans']} | {r['load']} | {r['when']} |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100,300,1000")
    parser.add_argument("--sample", type=int, default=8)
    args = parser.parse_args()
    rows = measure([int(s) for s in args.steps.split(",")], args.sample)
    print(json.dumps(rows, indent=2))
    append_rows(rows)


if __name__ == "__main__":
    main()
