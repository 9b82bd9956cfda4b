"""The DuckLake warehouse (a PostgreSQL catalog started by the suite, a data folder):
writers in separate processes commit at once, readers see committed snapshots, rows equal
the source, and the widgets say exactly what they say on the embedded DuckDB file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest
from dagster import DagsterInstance, RunsFilter

from engine.lake import retrying, turns
from engine.lake.catalog_indexes import CATALOG_INDEXES, ensure_catalog_indexes
from engine.lake.database import SESSIONS_PER_PROCESS, close_databases, extension_path
from engine.lake.retrying import RetryingConnection
from engine.lake.target import catalog_dsn, masked
from engine.lake.turns import TURN_NAMESPACE, TurnSessions
from engine.lake.warehouse import LakeWarehouse
from engine.reporting.build import build_reporting_tables, mark_checked
from engine.streams import STREAMS
from engine.user_errors import CommandError
from engine.warehouse import (
    FAILURES_TABLE,
    STATE_TABLE,
    ClientBusy,
    StreamState,
    Warehouse,
    read_state,
    save_state,
)
from engine.warehouse_factory import open_warehouse, warehouse_from_settings
from pipelines.batches import BATCH_TAG, SIDE_BY_SIDE
from pipelines.definitions import defs
from pipelines.instance import connect_and_register, get_instance
from pipelines.jobs import SYNC_JOB_NAME
from pipelines.lake_maintenance import MAINTENANCE_JOB_NAME
from reports.widgets import run_widgets
from sandbox import AccountSpec
from support.batch_runs import run_batch
from tests.sync_helpers import compare_with_source, run_sync, source_objects

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parent.parent
CHARGES = next(spec for spec in STREAMS if spec.name == "charges")
NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)


@pytest.fixture
def lake(postgres_server, tmp_path, monkeypatch, home) -> Iterator[str]:
    """A fresh DuckLake: its own catalog database and data folder, set as the warehouse."""
    try:
        extension_path("ducklake"), extension_path("postgres_scanner")
    except CommandError as missing:
        pytest.skip(str(missing))
    database = postgres_server.create_database().rsplit("/", 1)[1]
    target = (f"ducklake:postgres:dbname={database} host={postgres_server.host} "
              f"port={postgres_server.port} user=postgres")
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)  # libpq reads it; not argv
    monkeypatch.setenv("STRIPE_REPORTS_WAREHOUSE", target)
    monkeypatch.setenv("STRIPE_REPORTS_LAKE_DATA_PATH", str(tmp_path / "lake-data"))
    yield target
    close_databases()  # its catalog sessions: the server takes 100 in all


WRITER = textwrap.dedent("""
    import json, os, time
    from engine.stripe_api import StripeAccount
    from engine.streams import STREAMS
    from engine.lake import retrying
    from engine.sync import sync_client
    from engine.warehouse_factory import warehouse_from_settings
    job = json.loads(os.environ["LAKE_TEST_JOB"])
    account = StripeAccount(job["client"], job["key"], api_base=job["api"],
                            requests_per_second=2000)
    started = time.time()
    report = sync_client(account, warehouse_from_settings(), STREAMS, chunk_rows=300)
    print(json.dumps({"started": started, "ended": time.time(),
                      "errors": [e.message for e in report.errors],
                      "retried": retrying.retried_commits}))
""")


def _start_writer(server, name: str) -> subprocess.Popen:
    key = server.world.accounts[name].secret_key  # in the environment: never in argv
    job = json.dumps({"client": name, "key": key, "api": server.base_url})
    return subprocess.Popen([sys.executable, "-c", WRITER], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "LAKE_TEST_JOB": job})


def _committed_view_problems(warehouse: Warehouse, created: dict[str, list[int]]) -> list[str]:
    """Within one read: every charge created before a client's cursor is there, once."""
    problems = []
    with warehouse.reader() as conn:
        for client, times in created.items():
            cursor = read_state(conn, client, "charges").created_cursor
            if cursor is None:
                continue
            landed, distinct = conn.execute(
                "SELECT count(*), count(DISTINCT id) FROM stripe.charges "
                "WHERE client_id = ? AND created < to_timestamp(?)", [client, cursor]
            ).fetchone()
            expected = sum(1 for t in times if t < cursor)
            if landed != expected or distinct != landed:
                problems.append(f"{client}: {landed} rows ({distinct} distinct) before "
                                f"the cursor {cursor}, {expected} in the source")
    return problems


def _watch(warehouse: Warehouse, created: dict[str, list[int]], stop: threading.Event,
           seen: list[str], reads: list[int]) -> None:
    while not stop.is_set():
        seen += _committed_view_problems(warehouse, created)
        reads.append(1)
        time.sleep(0.05)


def _count_catalog_sessions(dsn: str, stop: threading.Event, counts: list[int]) -> None:
    """The catalog's sessions held, sampled every 20 ms: those seen in two samples running,
    so that one connecting or ending as a sample is taken (DuckDB's pool opens one beyond its
    size for a moment) is not counted as held."""
    previous: set[int] = set()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        while not stop.is_set():
            cursor.execute("SELECT pid FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            current = {pid for (pid,) in cursor.fetchall()}
            counts.append(len(current & previous))
            previous = current
            conn.rollback()
            time.sleep(0.02)
    conn.close()


def test_two_writer_processes_commit_at_once_readers_see_committed_rows(
        lake, sandbox_factory, home):
    server = sandbox_factory([AccountSpec("north", charges=1500, customers=100),
                              AccountSpec("south", charges=1500, customers=100)], seed=5)
    created = {name: [obj["created"] for obj in source_objects(server, name, CHARGES).values()]
               for name in ("north", "south")}
    warehouse = warehouse_from_settings()
    assert isinstance(warehouse, LakeWarehouse)
    warehouse.ensure_schema()

    stop, problems, reads = threading.Event(), [], []
    reader = threading.Thread(target=_watch, args=(warehouse, created, stop, problems, reads))
    sessions: list[int] = []
    counter = threading.Thread(target=_count_catalog_sessions,
                               args=(catalog_dsn(lake), stop, sessions))
    reader.start(), counter.start()
    try:
        writers = [_start_writer(server, name) for name in ("north", "south")]
        outputs = [writer.communicate(timeout=300) for writer in writers]
    finally:
        stop.set()
        reader.join(), counter.join()

    assert [w.returncode for w in writers] == [0, 0], [err[-3000:] for _, err in outputs]
    runs = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert [run["errors"] for run in runs] == [[], []]
    print("commits run again after a conflict:", [run["retried"] for run in runs])
    assert max(r["started"] for r in runs) < min(r["ended"] for r in runs), "not at once"
    assert problems == [] and len(reads) > 3
    # A first sync writes ~16 streams side by side; the catalog sessions stay bounded (a
    # lake session and a commit-turn session each, the client's lock) and the server's
    # default 100 connections are far away: unbounded, these two held 46 of 50 and failed.
    per_writer = 2 * SESSIONS_PER_PROCESS + 1
    print("catalog sessions at most:", max(sessions))
    # + the reader's two, + one a writer's DuckDB may open beyond its pool for a parallel
    # catalog scan (its pg_pool_max_connections setting says it can): 30, not 46.
    assert max(sessions) <= 2 * per_writer + 2 + 2, max(sessions)
    for name in ("north", "south"):
        assert compare_with_source(server, name, warehouse) == []
    # No lock file anywhere: the writers never waited for each other on one.
    leftovers = [p for p in [*home.rglob("*"), *Path(os.environ["STRIPE_REPORTS_LAKE_DATA_PATH"])
                             .rglob("*")] if p.name.endswith((".lock", ".writer-waiting"))]
    assert leftovers == []


def test_a_batch_run_syncs_four_clients_side_by_side_on_the_lake_within_few_connections(
        lake, sandbox_factory):
    names = [f"client{i}" for i in range(SIDE_BY_SIDE)]
    server = sandbox_factory([AccountSpec(name, charges=120, customers=12, subscriptions=6)
                              for name in names], seed=9)
    for name, account in server.world.accounts.items():
        connect_and_register(name, account.secret_key, api_base=server.base_url)
    server.configure(latency_ms=50)
    stop, sessions = threading.Event(), []
    counter = threading.Thread(target=_count_catalog_sessions,
                               args=(catalog_dsn(lake), stop, sessions))
    counter.start()
    try:
        batch = run_batch(get_instance(), names)  # every client's first sync, all streams
    finally:
        stop.set()
        counter.join()

    assert batch.success
    runs = get_instance().get_run_records(
        filters=RunsFilter(job_name=SYNC_JOB_NAME, tags={BATCH_TAG: batch.run_id}))
    spans = sorted((r.start_time, r.end_time) for r in runs)
    assert len(spans) == len(names)
    assert any(later_start < end for (_, end), (later_start, _) in pairwise(spans))
    warehouse = warehouse_from_settings()
    for name in names:
        assert compare_with_source(server, name, warehouse) == []
    # 4 clients' ~16 stream writers each, in one process: the lake's sessions and their
    # commit turns stay within the process's bound, plus a lock session a client. Unbounded,
    # 8 clients at once exhausted a 50-connection server (benchmarks/clients_curve.md).
    print("catalog sessions at most:", max(sessions))
    assert max(sessions) <= 2 * SESSIONS_PER_PROCESS + SIDE_BY_SIDE + 2, max(sessions)


def _widgets_json(warehouse: Warehouse, client: str) -> str:
    with warehouse.writer() as conn:
        build_reporting_tables(conn, client, now=NOW)
    results = run_widgets(client, warehouse=warehouse, now=NOW,
                          start=(NOW - timedelta(days=365)).date(), end=NOW.date())
    return json.dumps([r.to_json() for r in results], sort_keys=True, default=str, indent=1)


def test_widgets_json_is_identical_on_the_file_and_on_ducklake(
        lake, sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=600, customers=80,
                                          subscriptions=60, currency="eur")], seed=3)
    on_file = open_warehouse(tmp_path / "warehouse.duckdb")
    on_lake = warehouse_from_settings()
    for warehouse in (on_file, on_lake):
        assert run_sync(server, "acme", warehouse).errors == []

    file_json, lake_json = _widgets_json(on_file, "acme"), _widgets_json(on_lake, "acme")

    assert '"state": "ok"' in lake_json
    assert lake_json == file_json
    assert on_lake.purge_client("acme") > 0
    with on_lake.reader() as conn:
        assert conn.execute("SELECT count(*) FROM stripe.charges").fetchone()[0] == 0


@pytest.fixture(params=["file", "lake"])
def any_warehouse(request, tmp_path) -> Warehouse:
    if request.param == "lake":
        request.getfixturevalue("lake")
        return warehouse_from_settings()
    return open_warehouse(tmp_path / "warehouse.duckdb")


def test_cursors_and_failures_keep_one_row_per_key(any_warehouse):
    for cursor in (100, 200):
        with any_warehouse.writer() as conn:
            save_state(conn, StreamState("acme", "charges", created_cursor=cursor))
    any_warehouse.record_failure("acme", "first")
    any_warehouse.record_failure("acme", "second")
    with any_warehouse.reader() as conn:
        assert conn.execute(f"SELECT client_id, stream, created_cursor FROM {STATE_TABLE}"
                            ).fetchall() == [("acme", "charges", 200)]
        assert conn.execute(f"SELECT message FROM {FAILURES_TABLE}").fetchall() == [("second",)]


def test_a_warehouse_file_made_with_primary_keys_still_upserts(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA meta")
        conn.execute(f"CREATE TABLE {STATE_TABLE} (client_id VARCHAR, stream VARCHAR, "
                     "created_cursor BIGINT, events_cursor BIGINT, last_full_sync TIMESTAMPTZ,"
                     " updated_at TIMESTAMPTZ, PRIMARY KEY (client_id, stream))")
    warehouse = open_warehouse(path)
    for cursor in (1, 2):
        with warehouse.writer() as conn:
            save_state(conn, StreamState("acme", "charges", created_cursor=cursor))
    with warehouse.reader() as conn:
        assert read_state(conn, "acme", "charges").created_cursor == 2


def test_a_conflicting_commit_is_run_again_on_the_newer_snapshot(lake):
    warehouse = warehouse_from_settings()
    with warehouse.writer() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS meta.t (client_id VARCHAR, n BIGINT)")
        conn.execute("INSERT INTO meta.t VALUES ('a', 1), ('b', 1)")
    with warehouse.writer() as first, warehouse.writer() as second:
        second.begin()
        second.execute("DELETE FROM meta.t WHERE client_id = 'b'")
        second.execute("INSERT INTO meta.t VALUES ('b', 2)")
        first.begin()
        first.execute("DELETE FROM meta.t WHERE client_id = 'a'")
        first.execute("INSERT INTO meta.t VALUES ('a', 2)")
        first.commit()
        second.commit()  # DuckLake refuses it (the table changed under it); it runs again
    with warehouse.reader() as conn:
        assert conn.execute("SELECT * FROM meta.t ORDER BY 1").fetchall() == [("a", 2), ("b", 2)]


def test_without_the_retry_such_a_commit_fails(lake):
    warehouse = warehouse_from_settings()
    with warehouse.writer() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS meta.t (client_id VARCHAR, n BIGINT)")
        conn.execute("INSERT INTO meta.t VALUES ('a', 1)")
    with warehouse.writer() as first, warehouse.writer() as second:
        plain = second._conn  # the bare DuckDB connection under the retrying one
        plain.begin()
        plain.execute("INSERT INTO meta.t VALUES ('b', 2)")
        first.begin()
        first.execute("DELETE FROM meta.t WHERE client_id = 'a'")
        first.commit()
        with pytest.raises(duckdb.TransactionException, match="(?i)conflict"):
            plain.commit()
    assert isinstance(first, RetryingConnection)


def test_one_sync_per_client_across_sessions_of_the_catalog(lake):
    warehouse = warehouse_from_settings()
    told: list[str] = []
    with warehouse.client_lock("acme"):
        with pytest.raises(ClientBusy, match="acme"), \
                warehouse.client_lock("acme", timeout=0.5, on_wait=told.append):
            pass
        with warehouse.client_lock("other", timeout=0.5):
            pass
    assert told and "stripe-reports sync acme" in told[0]
    with warehouse.client_lock("acme", timeout=0.5):
        pass


def test_ducklake_without_a_data_path_is_refused_with_guidance(lake, monkeypatch):
    monkeypatch.delenv("STRIPE_REPORTS_LAKE_DATA_PATH")
    with pytest.raises(CommandError, match="STRIPE_REPORTS_LAKE_DATA_PATH"):
        warehouse_from_settings()
    shown = masked("ducklake:postgres:dbname=x password=hunter2 host=h")
    assert "hunter2" not in shown and "dbname=x" in shown


def test_a_commit_waits_for_the_turn_another_writer_holds(lake):
    warehouse = warehouse_from_settings()
    assert isinstance(warehouse, LakeWarehouse)
    with warehouse.writer() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS meta.t (client_id VARCHAR, n BIGINT)")
    holder = psycopg2.connect(warehouse.dsn)  # another machine's writer, re-running in its turn
    holder.autocommit = True
    holder.cursor().execute("SELECT pg_advisory_lock(%s, 0)", (TURN_NAMESPACE,))
    committed = threading.Event()

    def write() -> None:
        with warehouse.writer() as conn:
            conn.begin()
            conn.execute("INSERT INTO meta.t VALUES ('a', 1)")
            conn.commit()
        committed.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert not committed.wait(1.0), "committed while another writer had the turn"
    finally:
        holder.close()  # its session ends: so does its turn, as when its process dies
    writer.join(30)
    assert committed.is_set()
    with warehouse.reader() as conn:
        assert conn.execute("SELECT * FROM meta.t").fetchall() == [("a", 1)]


def test_concurrent_builds_of_different_clients_all_commit_with_their_own_rows(
        lake, sandbox_factory):
    clients = ("north", "south", "east")
    server = sandbox_factory([AccountSpec(name, charges=120, customers=20, subscriptions=12)
                              for name in clients], seed=11)
    warehouse = warehouse_from_settings()
    for name in clients:
        assert run_sync(server, name, warehouse).errors == []
    with warehouse.writer() as conn:
        alone = {name: build_reporting_tables(conn, name, now=NOW).rows for name in clients}
    retried_before, failures = retrying.retried_commits, []

    def build_again(name: str) -> None:
        try:
            for _ in range(4):
                with warehouse.writer() as conn:
                    assert build_reporting_tables(conn, name, now=NOW).rows == alone[name]
        except BaseException as error:  # noqa: BLE001  # reported below, with its client
            failures.append(f"{name}: {error!r}")

    builders = [threading.Thread(target=build_again, args=(name,)) for name in clients]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join(300)

    assert failures == []
    print("commits run again after a conflict:", retrying.retried_commits - retried_before)
    with warehouse.reader() as conn:
        counts = dict(conn.execute("SELECT client_id, count(*) FROM reporting.payments "
                                   "GROUP BY ALL").fetchall())
    assert counts == {name: alone[name]["payments"] for name in clients}


def test_a_build_of_an_unchanged_schema_changes_no_catalog_schema(lake, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", charges=40, customers=10)], seed=2)
    warehouse = warehouse_from_settings()
    assert run_sync(server, "acme", warehouse).errors == []

    def schema_versions() -> list[int]:
        with warehouse.writer() as conn:
            build_reporting_tables(conn, "acme", now=NOW)
        with warehouse.reader() as conn:
            return [row[0] for row in conn.execute(
                "SELECT DISTINCT schema_version FROM ducklake_snapshots('lake') ORDER BY 1"
            ).fetchall()]

    first = schema_versions()
    assert schema_versions() == first  # new snapshots of rows, not of the schema



def test_ducklakes_file_list_lookups_use_the_catalog_indexes_a_writer_builds(
        lake, sandbox_factory):
    """Without them every query read the whole catalog file list: a quiet check slowed from
    0.6 s to ~5 s between 100 and 1,000 clients (benchmarks/lake_catalog_growth.md)."""
    server = sandbox_factory([AccountSpec("acme", charges=40, customers=10)], seed=2)
    warehouse = warehouse_from_settings()
    assert run_sync(server, "acme", warehouse).errors == []
    with psycopg2.connect(catalog_dsn(lake)) as pg, pg.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname = ANY(%s)",
                       (list(CATALOG_INDEXES),))
        assert sorted(name for (name,) in cursor.fetchall()) == sorted(CATALOG_INDEXES)
        # PostgreSQL prefers reading a list this small whole; forbidden to, DuckLake's own
        # statements show they can use the indexes (a query shape they miss would not).
        cursor.execute(f"ALTER DATABASE {cursor.connection.info.dbname} SET enable_seqscan = off")
    pg.close()
    close_databases()  # new catalog sessions, which take the setting
    assert compare_with_source(server, "acme", warehouse) == []
    with warehouse.writer() as conn:  # a write reads the file lists, deletes included
        conn.execute("DELETE FROM stripe.charges WHERE client_id = 'acme' AND id IN "
                     "(SELECT id FROM stripe.charges WHERE client_id = 'acme' LIMIT 1)")
    with warehouse.reader() as conn:
        conn.execute("SELECT count(*) FROM stripe.charges WHERE client_id = 'acme'").fetchone()
    close_databases()
    deadline, used = time.monotonic() + 10, {}
    while time.monotonic() < deadline and not all(used.get(n) for n in CATALOG_INDEXES):
        with psycopg2.connect(catalog_dsn(lake)) as pg, pg.cursor() as cursor:
            cursor.execute("SELECT indexrelname, idx_scan FROM pg_stat_user_indexes "
                           "WHERE indexrelname = ANY(%s)", (list(CATALOG_INDEXES),))
            used = dict(cursor.fetchall())
        pg.close()
        time.sleep(0.5)
    assert all(used.get(name) for name in CATALOG_INDEXES), used

    close_databases()  # another process's first use: nothing to build, nothing fails
    with warehouse.writer() as conn:
        conn.execute("SELECT 1")


def test_a_catalog_role_that_may_not_build_the_indexes_still_reads(lake):
    with warehouse_from_settings().writer() as conn:  # the catalog and its indexes made
        conn.execute("SELECT 1")
    with psycopg2.connect(catalog_dsn(lake)) as pg, pg.cursor() as cursor:
        for name in CATALOG_INDEXES:
            cursor.execute(f"DROP INDEX {name}")
        cursor.execute("CREATE ROLE report_reader LOGIN PASSWORD 'reader'")
        cursor.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO report_reader")
    pg.close()
    reader_dsn = catalog_dsn(lake).replace("user=postgres", "user=report_reader password=reader")
    sessions = TurnSessions(reader_dsn, keep=1)
    try:
        assert ensure_catalog_indexes(sessions) == []  # left to a writer, without an error
        assert ensure_catalog_indexes(sessions) == []  # and its session is still usable
    finally:
        sessions.close()
    with warehouse_from_settings().reader() as conn:
        assert conn.execute("SELECT count(*) FROM stripe.charges").fetchone() == (0,)

def _widgets_only(warehouse: Warehouse, client: str) -> str:
    results = run_widgets(client, warehouse=warehouse, now=NOW,
                          start=(NOW - timedelta(days=365)).date(), end=NOW.date())
    return json.dumps([r.to_json() for r in results], sort_keys=True, default=str)


def _maintenance_run(instance: DagsterInstance | None = None) -> Any:
    keep_nothing = {"keep_snapshots_days": 0, "keep_unused_files_hours": 0}
    return defs.resolve_job_def(MAINTENANCE_JOB_NAME).execute_in_process(
        run_config={"ops": {"maintain_lake": {"config": keep_nothing}}}, instance=instance)


def test_maintenance_merges_files_and_expires_snapshots_keeping_every_row(
        lake, sandbox_factory):
    clients = ("north", "south")
    server = sandbox_factory([AccountSpec(name, charges=80, customers=12, subscriptions=8)
                              for name in clients], seed=4)
    warehouse = warehouse_from_settings()
    for name in clients:
        assert run_sync(server, name, warehouse).errors == []
        for _ in range(3):  # three nights of builds: each leaves files and a snapshot
            with warehouse.writer() as conn:
                build_reporting_tables(conn, name, now=NOW)
    widgets = {name: _widgets_only(warehouse, name) for name in clients}
    data_files = Path(os.environ["STRIPE_REPORTS_LAKE_DATA_PATH"])
    on_disk = len(list(data_files.rglob("*.parquet")))

    result = _maintenance_run()

    assert result.success
    with warehouse.reader() as conn:
        snapshots = conn.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchone()[0]
    assert snapshots <= 2  # expired down to the current one (and the pass's own)
    # Merged down to a file or two a table (a data file and its deletes), however many
    # tables there are: 59 files became 36 for 27 tables.
    remaining = list(data_files.rglob("*.parquet"))
    tables = {path.parent for path in remaining}
    assert len(remaining) < on_disk and len(remaining) <= 2 * len(tables)
    for name in clients:
        assert compare_with_source(server, name, warehouse) == []
        assert _widgets_only(warehouse, name) == widgets[name]


def test_maintenance_lets_writers_in_between_the_files_it_merges(lake, monkeypatch):
    warehouse = warehouse_from_settings()
    with warehouse.writer() as conn:  # small merged files: a big table's merge in miniature
        conn.execute("CALL lake.set_option('target_file_size', '20KB')")
        conn.execute("CREATE TABLE IF NOT EXISTS meta.t (client_id VARCHAR, n BIGINT, s VARCHAR)")
        for night in range(30):  # thirty commits, thirty small files
            conn.execute("INSERT INTO meta.t SELECT 'a', range, md5(range::VARCHAR) "
                         "FROM range(?, ?)", [night * 100, night * 100 + 100])

    def files_and_rows() -> tuple[int, tuple]:
        with warehouse.reader() as conn:
            files = conn.execute("SELECT file_count FROM ducklake_table_info('lake') "
                                 "WHERE table_name = 't'").fetchone()[0]
            return files, conn.execute("SELECT count(*), sum(n), min(s), max(s) "
                                       "FROM meta.t").fetchone()

    merged_in_turn: list[int] = []
    held = turns.CommitTurn.held

    @contextmanager
    def watched(self: Any) -> Iterator[None]:
        before = files_and_rows()[0]
        with held(self):
            yield
        merged_in_turn.append(before - files_and_rows()[0])

    files_before, rows_before = files_and_rows()
    monkeypatch.setattr(turns.CommitTurn, "held", watched)
    warehouse.maintain(timedelta(days=7), timedelta(hours=24))

    files_after, rows_after = files_and_rows()
    assert files_after < files_before / 2
    assert rows_after == rows_before
    assert len([n for n in merged_in_turn if n > 0]) > 1, "merged the whole table in one turn"


def test_maintenance_on_the_duckdb_file_has_nothing_to_do(home, tmp_path, monkeypatch):
    monkeypatch.setenv("STRIPE_REPORTS_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    instance = DagsterInstance.ephemeral()
    result = _maintenance_run(instance)
    assert result.success
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("nothing to do" in message for message in logged)


PURGED = "purged-client"


def _client_tables(warehouse: Warehouse) -> list[str]:
    with warehouse.reader() as conn:
        return [f"{s}.{t}" for s, t in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.columns "
            "WHERE column_name = 'client_id' AND table_catalog = 'lake' "
            "AND table_schema IN ('stripe', 'reporting', 'meta')").fetchall()]


def _rows_at_versions(warehouse: Warehouse, versions: list[int], client: str) -> dict[int, int]:
    """The client's rows each snapshot still shows (an expired snapshot shows none)."""
    tables, shown = _client_tables(warehouse), {}
    for version in versions:
        with warehouse.reader() as conn:
            try:
                shown[version] = sum(conn.execute(
                    f"SELECT count(*) FROM {table} AT (VERSION => {version}) "
                    "WHERE client_id = ?", [client]).fetchone()[0] for table in tables)
            except duckdb.Error as error:  # a table not there yet, or the snapshot expired
                assert "does not exist" in str(error) or "not found" in str(error).lower() \
                    or "snapshot" in str(error).lower(), error
    return shown


def _files_holding(data_path: Path, text: str) -> list[str]:
    """Data files (Parquet, delete files included) with a row whose any column holds `text`."""
    holding = []
    with duckdb.connect() as conn:
        for file in sorted(data_path.rglob("*.parquet")):
            hits = conn.execute("SELECT count(*) FROM read_parquet(?) t "
                                "WHERE CAST(t AS VARCHAR) LIKE ?",
                                [str(file), f"%{text}%"]).fetchone()[0]
            if hits or text.encode() in file.read_bytes():
                holding.append(file.name)
    return holding


def _catalog_rows_holding(warehouse: LakeWarehouse, text: str) -> int:
    """Rows DuckLake inlined into the PostgreSQL catalog that hold `text`."""
    with psycopg2.connect(warehouse.dsn) as session, session.cursor() as cursor:
        cursor.execute("SELECT schemaname, tablename FROM pg_tables "
                       "WHERE tablename LIKE 'ducklake_inlined_data%'")
        total = 0
        for schema, table in cursor.fetchall():
            cursor.execute(f'SELECT count(*) FROM "{schema}"."{table}" t '
                           "WHERE t::text LIKE %s", (f"%{text}%",))
            total += cursor.fetchone()[0]
    session.close()
    return total


def test_purge_leaves_no_snapshot_and_no_file_holding_the_clients_rows(lake, sandbox_factory):
    from tests.test_cli import run_cli, save  # the real command line, against this lake

    server = sandbox_factory([AccountSpec(name, charges=60, customers=10, subscriptions=6)
                              for name in ("keeper", PURGED)], seed=8)
    warehouse = warehouse_from_settings()
    assert isinstance(warehouse, LakeWarehouse)
    for name in ("keeper", PURGED):
        save(name)
        for _ in range(2):  # two syncs and builds: rows replaced, several snapshots
            assert run_sync(server, name, warehouse).errors == []
            with warehouse.writer() as conn:
                build_reporting_tables(conn, name, now=NOW)
    keeper_widgets = _widgets_only(warehouse, "keeper")
    with warehouse.reader() as conn:
        versions = [v for (v,) in conn.execute(
            "SELECT snapshot_id FROM ducklake_snapshots('lake') ORDER BY 1").fetchall()]
    data_path = Path(os.environ["STRIPE_REPORTS_LAKE_DATA_PATH"])
    assert sum(_rows_at_versions(warehouse, versions, PURGED).values()) > 0
    assert _files_holding(data_path, PURGED)  # the check below can see what it looks for

    purged = run_cli("disconnect", PURGED, "--purge")

    assert purged.returncode == 0, purged.stderr
    assert "time travel" in purged.stdout and "every client" in purged.stdout
    close_databases()  # what this process cached of the lake is read afresh
    warehouse = warehouse_from_settings()
    with warehouse.reader() as conn:
        now_there = [v for (v,) in conn.execute(
            "SELECT snapshot_id FROM ducklake_snapshots('lake')").fetchall()]
    shown = _rows_at_versions(warehouse, sorted(set(versions + now_there)), PURGED)
    assert shown and set(shown.values()) == {0}, shown
    assert _files_holding(data_path, PURGED) == []
    assert _catalog_rows_holding(warehouse, PURGED) == 0
    assert compare_with_source(server, "keeper", warehouse) == []
    assert _widgets_only(warehouse, "keeper") == keeper_widgets


def test_a_read_only_lake_data_folder_is_read_and_a_sync_says_what_to_do(
        lake, sandbox_factory):
    from tests.test_bad_input import _read_only, refused  # the bind-mount helper, as there
    from tests.test_cli import CLI, SMALL, run_cli

    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    key = server.world.accounts["acme"].secret_key
    assert run_cli("connect", "acme", stdin=key + "\n").returncode == 0
    assert run_cli("sync", "acme").returncode == 0
    data_path = Path(os.environ["STRIPE_REPORTS_LAKE_DATA_PATH"])
    files = sorted(p.name for p in data_path.rglob("*"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*_read_only(data_path), str(CLI), *args], capture_output=True,
                              text=True, timeout=180, env=dict(os.environ), cwd="/")

    refused(run("sync", "acme"), 1, f"Cannot write the DuckLake data folder {data_path}",
            "STRIPE_REPORTS_LAKE_DATA_PATH", "Make it writable")
    shown = run("widget", "acme", "mrr")
    assert shown.returncode == 0 and "state: ok" in shown.stdout, shown.stderr
    assert sorted(p.name for p in data_path.rglob("*")) == files


class _Conflicting:
    """A statement DuckLake refuses `times` times in a row, as when other writers' one-row
    statements (committed without the turn) keep landing first: then it commits."""

    def __init__(self, times: int) -> None:
        self.times, self.runs = times, 0

    def execute(self, query: str, parameters=None):
        self.runs += 1
        if self.runs <= self.times:
            raise duckdb.TransactionException(
                "Failed to commit DuckLake transaction. Transaction conflict - attempting to "
                "insert into table with index \"3\" - but another transaction has deleted "
                "inlined data from it")
        return self


class _Turn:
    def __init__(self) -> None:
        self.taken = 0

    @contextmanager
    def held(self):
        self.taken += 1
        yield


def test_a_statement_of_its_own_that_conflicts_again_in_its_turn_is_run_again():
    # Measured on the lake (100 quiet clients, 8 side by side): one run again was not
    # enough for 2 of them, whose check failed on DuckLake's conflict.
    statement, turn = _Conflicting(times=3), _Turn()
    conn = RetryingConnection(statement, turn)
    assert conn.execute("MERGE INTO meta.sync_starts ...") is statement
    assert statement.runs == 4 and turn.taken == 1
    # A conflict every time is still said, after COMMIT_ATTEMPTS runs.
    endless = _Conflicting(times=100)
    with pytest.raises(duckdb.TransactionException, match="conflict"):
        RetryingConnection(endless, _Turn()).execute("MERGE INTO meta.sync_starts ...")
    assert endless.runs == retrying.COMMIT_ATTEMPTS


def test_clients_checked_together_count_as_built_each_when_it_was_checked(any_warehouse):
    with any_warehouse.writer() as conn:
        for client in ("acme", "beta", "gamma"):
            build_reporting_tables(conn, client)
    first = datetime.now(UTC) + timedelta(minutes=1)
    second = first + timedelta(minutes=1)
    with any_warehouse.writer() as conn:
        mark_checked(conn, {"acme": first, "beta": second})
    with any_warehouse.reader() as conn:
        built = dict(conn.execute("SELECT client_id, built_at FROM reporting.freshness"
                                  ).fetchall())
        synced = dict(conn.execute("SELECT client_id, last_sync_at FROM reporting.clients"
                                   ).fetchall())
    assert (built["acme"], built["beta"]) == (first, second) and built["gamma"] < first
    assert (synced["acme"], synced["beta"]) == (first, second)
