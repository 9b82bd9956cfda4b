"""The DuckDB warehouse: schema from the stream specs, merges, cursors, and safe access.

DuckDB lets one process write a database file at a time, and a writer locks readers
out. Every process (Dagster runs, the CLI, the web page) therefore goes through one
advisory lock file: writers take it exclusively for short transactions after the
fetch, readers take it shared for the length of a query. Waiting replaces failing.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from assets.streams import (
    BALANCE_COLUMNS,
    BOOKKEEPING_COLUMNS,
    STREAMS,
    ChildSpec,
    Column,
    StreamSpec,
)
from resources.settings import load_settings

STATE_TABLE = "meta.sync_state"


# DuckDB would take most of the machine's memory for caches; a sync needs little of it.
WRITER_CONFIG = {"memory_limit": "128MB", "preserve_insertion_order": False}


class WarehouseBusy(TimeoutError):
    """The warehouse stayed locked by another writer for longer than we wait."""


@dataclass
class StreamState:
    client_id: str
    stream: str
    # Every object created before this instant has landed (epoch seconds).
    created_cursor: int | None = None
    # Every event before this instant has been applied (epoch seconds).
    events_cursor: int | None = None
    last_full_sync: datetime | None = None
    # Set while a full refresh is under way (it may span runs if one dies).
    full_started_at: datetime | None = None


@dataclass(frozen=True)
class MergeCounts:
    inserted: int = 0
    updated: int = 0

    def __add__(self, other: MergeCounts) -> MergeCounts:
        return MergeCounts(self.inserted + other.inserted, self.updated + other.updated)


def _column_ddl(columns: tuple[Column, ...]) -> str:
    return ",\n  ".join(f'"{c.name}" {c.type}' for c in columns)


def _table_ddl(table: str, columns: tuple[Column, ...]) -> str:
    # (client_id, id) is kept unique by the merge (delete-then-insert in one transaction,
    # writers serialised by the lock), not by a PRIMARY KEY: DuckDB holds a key index in
    # memory and rewrites it at every checkpoint, which made memory grow with the table.
    return f"CREATE TABLE IF NOT EXISTS stripe.{table} (\n  {_column_ddl(columns)}\n)"


def stream_columns(spec: StreamSpec) -> tuple[Column, ...]:
    return BOOKKEEPING_COLUMNS[:1] + spec.columns + BOOKKEEPING_COLUMNS[1:]


def child_columns(child: ChildSpec) -> tuple[Column, ...]:
    parent = Column(child.parent_column, "VARCHAR", "Parent object id")
    return (BOOKKEEPING_COLUMNS[0], parent, *child.columns, *BOOKKEEPING_COLUMNS[1:])


def schema_statements() -> list[str]:
    statements = ["CREATE SCHEMA IF NOT EXISTS stripe", "CREATE SCHEMA IF NOT EXISTS meta"]
    for spec in STREAMS:
        statements.append(_table_ddl(spec.table, stream_columns(spec)))
        statements += _add_missing_columns(spec.table, stream_columns(spec))
        for child in spec.children:
            statements.append(_table_ddl(child.table, child_columns(child)))
            statements += _add_missing_columns(child.table, child_columns(child))
    statements.append(_table_ddl("balance", BALANCE_COLUMNS))
    statements.append(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (client_id VARCHAR, stream VARCHAR, "
        "created_cursor BIGINT, events_cursor BIGINT, last_full_sync TIMESTAMPTZ, "
        "updated_at TIMESTAMPTZ, PRIMARY KEY (client_id, stream))"
    )
    statements.append(
        f"ALTER TABLE {STATE_TABLE} ADD COLUMN IF NOT EXISTS full_started_at TIMESTAMPTZ"
    )
    return statements


def _add_missing_columns(table: str, columns: tuple[Column, ...]) -> list[str]:
    # Specs grow; existing warehouses gain the new columns on the next write.
    return [
        f'ALTER TABLE stripe.{table} ADD COLUMN IF NOT EXISTS "{c.name}" {c.type}'
        for c in columns
    ]


class Warehouse:
    def __init__(self, path: Path | str, lock_timeout: float = 900.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._schema_ready = False

    @classmethod
    def from_settings(cls) -> Warehouse:
        return cls(load_settings().warehouse_path)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + self.lock_timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise WarehouseBusy(
                            f"The warehouse {self.path} stayed locked by another writer for "
                            f"{self.lock_timeout:.0f}s; try again when the running sync ends."
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive, short-lived read-write connection. Keep the work inside small."""
        with self._locked(exclusive=True):
            conn = duckdb.connect(str(self.path), config=WRITER_CONFIG)
            try:
                if not self._schema_ready:
                    for statement in schema_statements():
                        conn.execute(statement)
                    self._schema_ready = True
                yield conn
            finally:
                conn.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; waits while a writer holds the file."""
        if not self.path.exists():
            with self.writer():
                pass
        with self._locked(exclusive=False):
            conn = duckdb.connect(str(self.path), read_only=True)
            try:
                yield conn
            finally:
                conn.close()

    def ensure_schema(self) -> None:
        with self.writer():
            pass

    def purge_client(self, client_id: str) -> int:
        """Delete every row of one client (stripe.*, reporting.*, cursors); returns the count."""
        removed = 0
        with self.writer() as conn:
            tables = conn.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.columns "
                "WHERE column_name = 'client_id' AND table_schema IN ('stripe', 'reporting', "
                "'meta') AND table_name NOT IN (SELECT view_name FROM duckdb_views())"
            ).fetchall()
            conn.begin()
            for (table,) in tables:
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE client_id = ?", [client_id]).fetchone()[0]
            conn.commit()
        return removed

    def read_state(self, client_id: str, stream: str) -> StreamState:
        with self.reader() as conn:
            return read_state(conn, client_id, stream)


def read_state(conn: duckdb.DuckDBPyConnection, client_id: str, stream: str) -> StreamState:
    row = conn.execute(
        "SELECT created_cursor, events_cursor, last_full_sync, full_started_at "
        f"FROM {STATE_TABLE} "
        "WHERE client_id = ? AND stream = ?",
        [client_id, stream],
    ).fetchone()
    if row is None:
        return StreamState(client_id, stream)
    return StreamState(client_id, stream, *row)


def save_state(conn: duckdb.DuckDBPyConnection, state: StreamState) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO {STATE_TABLE} BY NAME SELECT ? AS client_id, ? AS stream, "
        "? AS created_cursor, ? AS events_cursor, ? AS last_full_sync, ? AS updated_at, "
        "? AS full_started_at",
        [
            state.client_id, state.stream, state.created_cursor, state.events_cursor,
            state.last_full_sync, datetime.now(UTC), state.full_started_at,
        ],
    )


def _json_path(path: tuple[str, ...]) -> str:
    return "$." + ".".join(path)


def typed_select(columns: tuple[Column, ...], json_column: str, source: str) -> str:
    """SELECT the spec's typed columns from a JSON column, parsing each document once."""
    paths: list[str] = []
    expressions: list[str] = []

    def slot(path: tuple[str, ...]) -> str:
        paths.append(_json_path(path))
        return f"_v[{len(paths)}]"

    for column in columns:
        if column.type == "JSON":  # kept as JSON, whatever its shape
            value = f"json_extract({json_column}, '{_json_path(column.source_path)}')"
            expressions.append(f'{value} AS "{column.name}"')
            continue
        if column.ref:  # an id, or an expanded object whose id we keep
            value = f"coalesce({slot((*column.source_path, 'id'))}, {slot(column.source_path)})"
        else:
            value = slot(column.source_path)
        expressions.append(f'{_CAST[column.type].format(value)} AS "{column.name}"')
    path_list = ", ".join(f"'{p}'" for p in paths)
    return (
        f"SELECT * EXCLUDE (_v), {', '.join(expressions)} FROM "
        f"(SELECT *, json_extract_string({json_column}, [{path_list}]) AS _v FROM {source})"
    )


_CAST: dict[str, str] = {
    "VARCHAR": "{}",
    "BIGINT": "TRY_CAST({} AS BIGINT)",
    "DOUBLE": "TRY_CAST({} AS DOUBLE)",
    "BOOLEAN": "TRY_CAST({} AS BOOLEAN)",
    "TIMESTAMPTZ": "to_timestamp(TRY_CAST({} AS BIGINT))",
}


def _upsert(conn: duckdb.DuckDBPyConnection, table: str, select: str) -> None:
    """Replace rows by (client_id, id): delete the ones being written, then insert."""
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _upsert AS {select}")
    try:
        conn.execute(
            f"DELETE FROM stripe.{table} t USING _upsert u "
            "WHERE t.client_id = u.client_id AND t.id = u.id"
        )
        conn.execute(f"INSERT INTO stripe.{table} BY NAME SELECT * FROM _upsert")
    finally:
        conn.execute("DROP TABLE IF EXISTS _upsert")


def merge_rows(
    conn: duckdb.DuckDBPyConnection, table: str, columns: tuple[Column, ...], rows: pa.Table
) -> MergeCounts:
    """Upsert raw rows into stripe.<table> by (client_id, id), typed columns from `raw`."""
    if rows.num_rows == 0:
        return MergeCounts()
    conn.register("incoming", rows)
    try:
        existing = conn.execute(
            f"SELECT count(*) FROM stripe.{table} t SEMI JOIN incoming i "
            "ON t.client_id = i.client_id AND t.id = i.id"
        ).fetchone()[0]
        _upsert(conn, table, typed_select(tuple(c for c in columns if c.name != "id"), "raw",
                                          "incoming"))
    finally:
        conn.unregister("incoming")
    return MergeCounts(inserted=rows.num_rows - existing, updated=existing)


def insert_rows(conn: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    """Upsert already-typed rows (the balance snapshot)."""
    conn.register("incoming_typed", rows)
    try:
        _upsert(conn, table, "SELECT * FROM incoming_typed")
    finally:
        conn.unregister("incoming_typed")


def replace_children(
    conn: duckdb.DuckDBPyConnection, child: ChildSpec, parents: pa.Table
) -> None:
    """A parent's child list is replaced whole: items removed in Stripe disappear here too."""
    if parents.num_rows == 0:
        return
    conn.register("parents", parents)
    try:
        conn.execute(
            f"DELETE FROM stripe.{child.table} c USING parents p "
            f"WHERE c.client_id = p.client_id AND c.{child.parent_column} = p.id"
        )
        items = (
            f"SELECT client_id, id AS {child.parent_column}, _synced_at, false AS is_deleted, "
            f"unnest(CAST(json_extract(raw, '{_json_path(child.path)}') AS JSON[])) AS raw "
            "FROM parents"
        )
        typed = typed_select(child.columns, "raw", f"({items})")
        _upsert(conn, child.table, typed)
    finally:
        conn.unregister("parents")


def flag_unseen_as_deleted(
    conn: duckdb.DuckDBPyConnection, table: str, client_id: str, listed_since: datetime
) -> int:
    """After a complete full listing: rows it did not touch are gone from Stripe."""
    result = conn.execute(
        f"UPDATE stripe.{table} SET is_deleted = true WHERE client_id = ? "
        "AND _synced_at < ? AND NOT coalesce(is_deleted, false)",
        [client_id, listed_since],
    ).fetchone()
    return int(result[0]) if result else 0
