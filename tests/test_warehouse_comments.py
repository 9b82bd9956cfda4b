"""The warehouse explains itself: every stripe.* and reporting.* table and column carries
the COMMENT its Dagster asset shows, on the DuckDB file and on DuckLake, written when the
schema is created or changed and not again on every writer or build."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from apps.launch import run_client_syncs
from engine.connection_store import ConnectionStore
from engine.credentials import connect_client
from engine.lake.database import close_databases, extension_path
from engine.reporting import REPORTING_TABLES, build_reporting_tables
from engine.table_comments import apply_comments
from engine.user_errors import CommandError
from engine.warehouse import Warehouse, stripe_table_docs
from engine.warehouse_factory import open_warehouse, warehouse_from_settings
from sandbox import AccountSpec
from tests.sync_helpers import run_sync

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
UNCOMMENTED = ("SELECT count(*) FROM duckdb_columns() WHERE schema_name IN "
               "('stripe', 'reporting') AND comment IS NULL")


@pytest.fixture
def lake_target(postgres_server, tmp_path, monkeypatch, home) -> Iterator[str]:
    """A fresh DuckLake (its own catalog database and data folder) as the warehouse."""
    try:
        extension_path("ducklake"), extension_path("postgres_scanner")
    except CommandError as missing:
        pytest.skip(str(missing))
    database = postgres_server.create_database().rsplit("/", 1)[1]
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)  # libpq reads it; not argv
    monkeypatch.setenv("STRIPE_REPORTS_WAREHOUSE",
                       f"ducklake:postgres:dbname={database} host={postgres_server.host} "
                       f"port={postgres_server.port} user=postgres")
    monkeypatch.setenv("STRIPE_REPORTS_LAKE_DATA_PATH", str(tmp_path / "lake-data"))
    yield "lake"
    close_databases()


@pytest.fixture(params=["file", pytest.param("lake", marks=pytest.mark.postgres)])
def synced(request, tmp_path, home, sandbox_factory) -> Warehouse:
    """A warehouse with one sandbox client synced and its reporting tables built."""
    if request.param == "lake":
        request.getfixturevalue("lake_target")
        warehouse = warehouse_from_settings()
    else:
        warehouse = open_warehouse(tmp_path / "warehouse.duckdb")
    server = sandbox_factory([AccountSpec("acme", charges=120, customers=20)], seed=7)
    assert not run_sync(server, "acme", warehouse).errors
    with warehouse.writer() as conn:
        build_reporting_tables(conn, "acme", now=NOW, state="connected")
    return warehouse


def _comments(warehouse: Warehouse) -> dict[tuple[str, str], str | None]:
    with warehouse.reader() as conn:
        return {(f"{schema}.{table}", column): comment for schema, table, column, comment in
                conn.execute("SELECT schema_name, table_name, column_name, comment "
                             "FROM duckdb_columns() WHERE database_name = current_database() "
                             "AND schema_name IN ('stripe', 'reporting')").fetchall()}


def test_every_table_and_column_is_commented_from_its_spec(synced):
    with synced.reader() as conn:
        assert conn.execute(UNCOMMENTED).fetchone()[0] == 0
        tables = dict(conn.execute(
            "SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() "
            "WHERE schema_name IN ('stripe', 'reporting')").fetchall())
    assert all(tables.values()) and len(tables) > 20
    comments = _comments(synced)
    docs = [*stripe_table_docs(), *(table.doc for table in REPORTING_TABLES)]
    for doc in docs:  # word for word what the Dagster asset page says
        assert tables[doc.qualified] == doc.description
        for column in doc.columns:
            assert comments[(doc.qualified, column.name)] == column.description, column.name
    # The same name, two units: each comment says which.
    assert "minor unit" in comments[("stripe.charges", "amount")]
    assert "major units" in comments[("reporting.payments", "amount")]
    # reporting.*: the integer beside the decimal, named by its unit.
    assert "minor unit" in comments[("reporting.payments", "amount_minor")]
    assert "minor unit" in comments[("reporting.payouts", "amount_minor")]


def test_comments_are_written_once_not_on_every_writer(synced):
    with synced.writer() as conn:
        docs = [*stripe_table_docs(), *(table.doc for table in REPORTING_TABLES)]
        assert apply_comments(conn, docs) == 0  # nothing differs: nothing written
        conn.execute("COMMENT ON COLUMN stripe.charges.amount IS NULL")
        assert apply_comments(conn, docs) == 1  # the one that drifted, put back
    assert "minor unit" in _comments(synced)[("stripe.charges", "amount")]


def test_a_new_process_on_ducklake_adds_no_schema_version(lake_target, sandbox_factory):
    """Each process writes the schema when it first opens the lake: comments already there
    are not written again (each would be a new schema version, conflicting with writers)."""
    server = sandbox_factory([AccountSpec("acme", charges=40, customers=10)], seed=3)
    assert not run_sync(server, "acme", warehouse_from_settings()).errors

    def schema_version() -> int:
        close_databases()  # as a new process: the schema is checked again on first write
        with warehouse_from_settings().writer() as conn:
            build_reporting_tables(conn, "acme", now=NOW)
            return conn.execute("SELECT max(schema_version) FROM ducklake_snapshots("
                                "current_database())").fetchone()[0]

    first = schema_version()
    assert schema_version() == first


def test_reporting_clients_says_who_the_client_is(synced):
    with synced.reader() as conn:
        rows = conn.execute("SELECT client_id, name, timezone, currency, state, last_sync_at "
                            "FROM reporting.clients").fetchall()
        main = conn.execute("SELECT currency FROM reporting.currencies WHERE is_main"
                            ).fetchone()[0]
    assert rows == [("acme", "acme", "UTC", main, "connected", NOW)]


def test_a_dagster_sync_run_records_the_client_as_it_stands(home, sandbox_factory):
    """Through the real run: reporting.clients says `connected` and the store's last sync."""
    server = sandbox_factory([AccountSpec("acme", charges=60, customers=10)], seed=4)
    connect_client("acme", server.world.accounts["acme"].secret_key)
    outcomes = run_client_syncs(["acme"])
    assert [o.success for o in outcomes] == [True], [o.message for o in outcomes]
    with ConnectionStore.from_settings() as store:
        last_sync = store.get("acme").last_sync_at
    with warehouse_from_settings().reader() as conn:
        rows = conn.execute("SELECT client_id, name, state, last_sync_at FROM reporting.clients"
                            ).fetchall()
    assert rows == [("acme", "acme", "connected", last_sync)]
