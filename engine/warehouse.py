"""The warehouse: what every backend offers (`Warehouse`), and the SQL that runs on all of
them (schema from the stream specs, merges, cursors).

`engine.warehouse_factory.open_warehouse(target)` picks the backend: the DuckDB file
(engine/file_warehouse.py, its locks in engine/warehouse_lock.py) or a `ducklake:` catalog
that writers on many machines share (engine/lake/).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.streams import (
    BALANCE_COLUMNS,
    BOOKKEEPING_COLUMNS,
    STREAMS,
    ChildSpec,
    Column,
    StreamSpec,
)
from engine.table_comments import TableDoc, apply_comments

STATE_TABLE = "meta.sync_state"
# Each client's latest failed sync or build: widgets built before it are `stale`.
FAILURES_TABLE = "meta.sync_failures"
# The latest sync each client began, and its process: a sync killed outright records nothing.
STARTS_TABLE = "meta.sync_starts"
# When each client's stripe.* tables were last written, table by table: the reporting build
# compares it with what it read (engine.reporting.build.tables_due), scanning no table.
WRITES_TABLE = "meta.stripe_writes"
T = TypeVar("T")


# DuckDB would take most of the machine's memory for caches; a sync needs little of it.
# Writers checkpoint when they close (every few seconds, see HOLD_SECONDS in
# engine/sync.py), not whenever the WAL passes 16 MB: each checkpoint re-compresses
# the table's open row group, and at 5,000 objects a commit that was most of a sync's time.
# DuckDB's allocator (jemalloc) keeps freed pages for a second or so before it returns
# them: while chunks keep coming that was ~150 MB of a sync's peak. The two thresholds
# make it hand them back after each task and each large release.
WRITER_CONFIG = {"memory_limit": "128MB", "preserve_insertion_order": False,
                 "checkpoint_threshold": "1GB", "allocator_flush_threshold": "1MB",
                 "allocator_bulk_deallocation_flush_threshold": "1MB"}
# The targets a transaction that ran out of memory is retried with, in turn.
MORE_MEMORY = ("128MB", "256MB", "512MB", "1GB", "2GB")


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


def table_ddl(qualified: str, columns: tuple[Column, ...]) -> str:
    """CREATE TABLE IF NOT EXISTS for the columns, with no keys.

    (client_id, id) is kept unique by the merge (delete-then-insert in one transaction,
    writers serialised by the lock), not by a PRIMARY KEY: DuckDB holds a key index in
    memory and rewrites it at every checkpoint, which made memory grow with the table.
    """
    body = ",\n  ".join(f'"{c.name}" {c.type}' for c in columns)
    return f"CREATE TABLE IF NOT EXISTS {qualified} (\n  {body}\n)"


def _table_ddl(table: str, columns: tuple[Column, ...]) -> str:
    return table_ddl(f"stripe.{table}", columns)


def stream_columns(spec: StreamSpec) -> tuple[Column, ...]:
    return BOOKKEEPING_COLUMNS[:1] + spec.columns + BOOKKEEPING_COLUMNS[1:]


def child_columns(child: ChildSpec) -> tuple[Column, ...]:
    parent = Column(child.parent_column, "VARCHAR", "Parent object id")
    return (BOOKKEEPING_COLUMNS[0], parent, *child.columns, *BOOKKEEPING_COLUMNS[1:])


BALANCE_DESCRIPTION = ("A snapshot of the Stripe balance (available and pending, per currency) "
                       "taken at every sync.")


def stream_description(spec: StreamSpec) -> str:
    """The table's description: its Dagster asset's and its warehouse COMMENT."""
    children = "".join(_children_sentence(child) for child in spec.children)
    return f"{spec.description}{children} Source: GET {spec.endpoint}."


def _children_sentence(child: ChildSpec) -> str:
    name = child.path[0]
    if not child.in_parent_raw:
        return (f" Its `{name}` land in `stripe.{child.table}` (all of them, paged past the "
                f"embedded ones from GET {child.more_endpoint}), not in `raw`: there "
                f"`{'.'.join(child.path)}` is empty, and `{name}.has_more` true when there "
                "are any.")
    return (f" Its `{name}` land in `stripe.{child.table}`"
            + (f" (all of them: `raw` holds the `{name}` Stripe embeds and the rest, "
               f"paged from GET {child.more_endpoint})" if child.more_endpoint else "") + ".")


def child_description(spec: StreamSpec, child: ChildSpec) -> str:
    paged = (f", paged past the embedded ones from GET {child.more_endpoint}"
             if child.more_endpoint else "")
    return (f"{child.description} Filled with stripe.{spec.table}, from each object's "
            f"`{'.'.join(child.path)}`{paged}; replaced whole when its parent changes.")


def stripe_table_docs() -> list[TableDoc]:
    """Every stripe.* table with its description and columns, as COMMENTs say them."""
    docs = []
    for spec in STREAMS:
        docs.append(TableDoc(f"stripe.{spec.table}", stream_description(spec),
                             stream_columns(spec)))
        docs += [TableDoc(f"stripe.{child.table}", child_description(spec, child),
                          child_columns(child)) for child in spec.children]
    return [*docs, TableDoc("stripe.balance", BALANCE_DESCRIPTION, BALANCE_COLUMNS)]


def create_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """The stripe.* and meta.* tables created (or grown), and their comments written."""
    for statement in schema_statements():
        conn.execute(statement)
    apply_comments(conn, stripe_table_docs())


def schema_statements() -> list[str]:
    statements = ["CREATE SCHEMA IF NOT EXISTS stripe", "CREATE SCHEMA IF NOT EXISTS meta"]
    for spec in STREAMS:
        statements.append(_table_ddl(spec.table, stream_columns(spec)))
        statements += _add_missing_columns(spec.table, stream_columns(spec))
        for child in spec.children:
            statements.append(_table_ddl(child.table, child_columns(child)))
            statements += _add_missing_columns(child.table, child_columns(child))
    statements.append(_table_ddl("balance", BALANCE_COLUMNS))
    # No PRIMARY KEY (DuckLake has none): `_upsert` keeps one row per key.
    statements.append(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (client_id VARCHAR, stream VARCHAR, "
        "created_cursor BIGINT, events_cursor BIGINT, last_full_sync TIMESTAMPTZ, "
        "updated_at TIMESTAMPTZ)"
    )
    statements.append(
        f"ALTER TABLE {STATE_TABLE} ADD COLUMN IF NOT EXISTS full_started_at TIMESTAMPTZ"
    )
    statements.append(
        f"CREATE TABLE IF NOT EXISTS {FAILURES_TABLE} (client_id VARCHAR, "
        "failed_at TIMESTAMPTZ, message VARCHAR)"
    )
    statements.append(f"CREATE TABLE IF NOT EXISTS {STARTS_TABLE} (client_id VARCHAR, "
                      "started_at TIMESTAMPTZ, owner VARCHAR)")
    statements.append(f"CREATE TABLE IF NOT EXISTS {WRITES_TABLE} (client_id VARCHAR, "
                      "stripe_table VARCHAR, written_at TIMESTAMPTZ)")
    return statements


def _add_missing_columns(table: str, columns: tuple[Column, ...]) -> list[str]:
    # Specs grow; existing warehouses gain the new columns on the next write.
    return [
        f'ALTER TABLE stripe.{table} ADD COLUMN IF NOT EXISTS "{c.name}" {c.type}'
        for c in columns
    ]


class ClientBusy(TimeoutError):
    """Another sync of the same client held it for longer than we wait."""

    def __init__(self, client_id: str, holder: str, timeout: float) -> None:
        super().__init__(
            f"Another sync of client {client_id!r} ({holder or 'another process'}) kept "
            f"running for {timeout:.0f}s; this run changed nothing. Try again when it ends, "
            "or look at its run in the Dagster UI.")


def waiting_message(client_id: str, holder: str) -> str:
    """What a sync that waits for another sync of its client says, once."""
    return (f"Another sync of client {client_id!r} is running ({holder or 'another process'}); "
            "this one waits for it to finish.")


class Warehouse(ABC):
    """What every warehouse offers (engine/warehouse_factory.py opens the right one):
    short writers, readers of committed data, one sync per client, and purges."""

    lock_timeout: float
    # Said after a purge, beside the count: what making it final cost others, if anything.
    purge_note: str = ""

    @abstractmethod
    def writer(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A read-write connection with the schema in place. Keep the work inside short."""

    @abstractmethod
    def reader(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection that reads committed data only."""

    def client_reader(self, client_id: str) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A reader for one client's widgets: its `reporting.*` rows and sync records at the
        latest commit (other clients' rows may be missing). The lake serves a copy."""
        return self.reader()

    @abstractmethod
    def client_lock(self, client_id: str, timeout: float = 3600.0,
                    on_wait: Callable[[str], None] = lambda _: None
                    ) -> AbstractContextManager[None]:
        """Held while a client syncs or is purged: one at a time per client, every path."""

    @abstractmethod
    def readers_waiting(self) -> bool:
        """Whether a reader waits (a writer holding the warehouse should let go soon)."""

    @abstractmethod
    def _erase_history(self, tables: list[str]) -> None:
        """After rows of `tables` were deleted: leave no copy of them readable anywhere
        (old snapshots, superseded files, freed pages). Called under the client's lock."""

    def ensure_schema(self) -> None:
        with self.writer():
            pass

    def purge_client(self, client_id: str) -> int:
        """Delete every row of one client (stripe.*, reporting.*, cursors) for good, from
        what any reader, time travel or the files can show; returns the count."""
        with self.client_lock(client_id):
            with self.writer() as conn:
                tables = [table for (table,) in conn.execute(
                    "SELECT table_schema || '.' || table_name FROM information_schema.columns "
                    "WHERE column_name = 'client_id' AND table_schema IN ('stripe', "
                    "'reporting', 'meta') AND table_catalog = current_database() "
                    "AND table_name NOT IN (SELECT view_name FROM duckdb_views())"
                ).fetchall()]
                removed = in_transaction(conn, lambda: sum(
                    conn.execute(f"DELETE FROM {table} WHERE client_id = ?", [client_id])
                    .fetchone()[0] for table in tables))
            self._erase_history(tables)
        return removed

    def record_failure(self, client_id: str, message: str,
                       failed_at: datetime | None = None) -> None:
        """Remember that a sync or build of the client failed (now, or at `failed_at`):
        widgets built before then turn `stale`."""
        with self.writer() as conn:
            _upsert(conn, FAILURES_TABLE, ("client_id",), {
                "client_id": client_id, "failed_at": failed_at or datetime.now(UTC),
                "message": message})


def record_start(conn: duckdb.DuckDBPyConnection, client_id: str, owner: str) -> None:
    """Remember that a sync of the client began now in process `owner`
    (engine.processes): if that process dies first, its figures turn `stale`."""
    _upsert(conn, STARTS_TABLE, ("client_id",), {
        "client_id": client_id, "started_at": datetime.now(UTC), "owner": owner})


def in_transaction(conn: duckdb.DuckDBPyConnection, work: Callable[[], T]) -> T:
    """Run `work` in one transaction. If DuckDB runs out of its memory target, roll back and
    run it again with the next of MORE_MEMORY: a memory target never fails the work."""
    larger = iter(MORE_MEMORY)
    while True:
        conn.begin()
        try:
            result = work()
            conn.commit()
            return result
        except BaseException as error:
            _rollback_quietly(conn)
            target = next(larger, None) if _out_of_memory(error) else None
            if target is None:
                raise
            conn.execute(f"SET memory_limit = '{target}'")


def _out_of_memory(error: BaseException) -> bool:
    # A commit that runs out of memory fails as a TransactionException saying so: "could
    # not allocate", or "failed to pin block" when its pages no longer fit (a chunk of
    # invoices with 60 lines each, writing the lines at the commit).
    return isinstance(error, duckdb.OutOfMemoryException) or (
        isinstance(error, duckdb.TransactionException)
        and any(words in str(error) for words in ("could not allocate", "failed to pin block")))


def _rollback_quietly(conn: duckdb.DuckDBPyConnection) -> None:
    with suppress(duckdb.Error):  # a failed commit has rolled back already
        conn.rollback()


def read_state(conn: duckdb.DuckDBPyConnection, client_id: str, stream: str) -> StreamState:
    return saved_states(conn, client_id, [stream]).get(stream) or StreamState(client_id, stream)


def saved_states(conn: duckdb.DuckDBPyConnection, client_id: str, streams: list[str]
                 ) -> dict[str, StreamState]:
    """The client's saved state of each of these streams that has one, in one query."""
    rows = conn.execute(
        "SELECT stream, created_cursor, events_cursor, last_full_sync, full_started_at "
        f"FROM {STATE_TABLE} WHERE client_id = ? AND list_contains(?, stream)",
        [client_id, streams],
    ).fetchall()
    return {row[0]: StreamState(client_id, *row) for row in rows}


def save_state(conn: duckdb.DuckDBPyConnection, state: StreamState) -> None:
    save_states(conn, [state])


def save_states(conn: duckdb.DuckDBPyConnection, states: list[StreamState]) -> None:
    """Save the cursors, stamped with the time they were saved, in one statement (on
    DuckLake every statement costs catalog round trips)."""
    now = datetime.now(UTC)
    _upsert_rows(conn, STATE_TABLE, ("client_id", "stream"), [{
        "client_id": state.client_id, "stream": state.stream,
        "created_cursor": state.created_cursor, "events_cursor": state.events_cursor,
        "last_full_sync": state.last_full_sync, "updated_at": now,
        "full_started_at": state.full_started_at,
    } for state in states])


def _upsert(conn: duckdb.DuckDBPyConnection, table: str, key: tuple[str, ...],
            values: dict[str, object]) -> None:
    """Insert or replace one row by `key`, in one statement (no PRIMARY KEY needed)."""
    _upsert_rows(conn, table, key, [values])


def _upsert_rows(conn: duckdb.DuckDBPyConnection, table: str, key: tuple[str, ...],
                 rows: list[dict[str, object]]) -> None:
    """Insert or replace rows (all with the same columns) by `key`, in one statement."""
    if not rows:
        return
    names = list(rows[0])
    row = "(" + ", ".join("?" for _ in names) + ")"
    values = ", ".join([row] * len(rows))
    on = " AND ".join(f"t.{name} = s.{name}" for name in key)
    conn.execute(
        f"MERGE INTO {table} t USING (SELECT * FROM (VALUES {values}) v({', '.join(names)})) s "
        f"ON {on} WHEN MATCHED THEN UPDATE SET {', '.join(f'{n} = s.{n}' for n in names)} "
        "WHEN NOT MATCHED THEN INSERT BY NAME",
        [r[name] for r in rows for name in names],
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


def _replace_from(conn: duckdb.DuckDBPyConnection, table: str, staged: str,
                  delete: bool = True) -> None:
    """Replace rows by (client_id, id): delete the ones being written, then insert."""
    if delete:
        conn.execute(
            f"DELETE FROM stripe.{table} t USING {staged} u "
            "WHERE t.client_id = u.client_id AND t.id = u.id"
        )
    conn.execute(f"INSERT INTO stripe.{table} BY NAME SELECT * FROM {staged}")


@contextmanager
def _staged(conn: duckdb.DuckDBPyConnection, name: str, select: str) -> Iterator[str]:
    """A temporary table holding `select`, dropped afterwards.

    Not dropped after a failure: the transaction is aborted then (a statement now would
    hide the error), and its rollback, or the next CREATE OR REPLACE, removes the table.
    """
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select}")
    yield name
    conn.execute(f"DROP TABLE IF EXISTS {name}")


def merge_rows(conn: duckdb.DuckDBPyConnection, spec: StreamSpec, rows: pa.Table,
               known_new: bool = False) -> MergeCounts:
    """Upsert raw rows into stripe.<table> by (client_id, id), and replace their children.

    Every typed column, the id included, is extracted from `raw` by DuckDB once, into a
    staged table that the count, the merge and the child tables all read. `known_new`
    (the client had no rows in the table when this listing began) skips looking for rows
    to replace: that lookup scans the client's ids, the largest cost of a first sync.
    Children kept apart from the parent's raw (ChildSpec.in_parent_raw false) come in
    their own column of `rows` (engine.child_pages.batch_of_raw).
    """
    if rows.num_rows == 0:
        return MergeCounts()
    apart = [child for child in spec.children if not child.in_parent_raw]
    missing = [child.items_column for child in apart
               if child.items_column not in rows.column_names]
    if missing:  # a batch built without cutting them out would lose the items
        raise ValueError(f"rows for stripe.{spec.table} lack {missing}: build them with "
                         "engine.child_pages.batch_of_raw")
    conn.register("incoming", rows)
    raw_rows = "(SELECT client_id, is_deleted, raw, _synced_at FROM incoming)" if apart \
        else "incoming"
    try:
        with _staged(conn, "_incoming", typed_select(spec.columns, "raw", raw_rows)) as staged:
            existing = 0 if known_new else conn.execute(
                f"SELECT count(*) FROM stripe.{spec.table} t SEMI JOIN {staged} i "
                "ON t.client_id = i.client_id AND t.id = i.id"
            ).fetchone()[0]
            _replace_from(conn, spec.table, staged, delete=existing > 0)
            for child in spec.children:
                replace_children(conn, child, staged, delete=not known_new,
                                 items_from=None if child.in_parent_raw else "incoming")
    finally:
        conn.unregister("incoming")
    note_written(conn, _clients_of(rows), [spec.table, *(c.table for c in spec.children)])
    return MergeCounts(inserted=rows.num_rows - existing, updated=existing)


def insert_rows(conn: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    """Upsert already-typed rows (the balance snapshot)."""
    conn.register("incoming_typed", rows)
    try:
        with _staged(conn, "_typed", "SELECT * FROM incoming_typed") as staged:
            _replace_from(conn, table, staged)
    finally:
        conn.unregister("incoming_typed")
    note_written(conn, _clients_of(rows), [table])


def note_written(conn: duckdb.DuckDBPyConnection, client_ids: list[str],
                 tables: list[str]) -> None:
    """Record that the clients' rows of these stripe.* tables changed now, in the write's
    own transaction (WRITES_TABLE)."""
    now = datetime.now(UTC)
    _upsert_rows(conn, WRITES_TABLE, ("client_id", "stripe_table"), [
        {"client_id": client_id, "stripe_table": table, "written_at": now}
        for client_id in client_ids for table in tables])


def written_at(conn: duckdb.DuckDBPyConnection, client_id: str) -> dict[str, datetime]:
    """When each of the client's stripe.* tables was last written (WRITES_TABLE)."""
    return dict(conn.execute(f"SELECT stripe_table, written_at FROM {WRITES_TABLE} "
                             "WHERE client_id = ?", [client_id]).fetchall())


def _clients_of(rows: pa.Table) -> list[str]:
    return [str(client) for client in pc.unique(rows.column("client_id")).to_pylist()]


def replace_children(conn: duckdb.DuckDBPyConnection, child: ChildSpec, parents: str,
                     delete: bool = True, items_from: str | None = None) -> None:
    """A parent's child list is replaced whole: items removed in Stripe disappear here too.

    `parents` names a table of merged parent rows (client_id, id, raw, _synced_at); the
    items are cut out of their raw, or, for a list kept apart, read from `items_from`
    (the batch: its `_parent` id and the list's items column).
    """
    if delete:
        conn.execute(
            f"DELETE FROM stripe.{child.table} c USING {parents} p "
            f"WHERE c.client_id = p.client_id AND c.{child.parent_column} = p.id"
        )
    if items_from is not None:
        items = (
            f"SELECT client_id, _parent AS {child.parent_column}, _synced_at, "
            f"false AS is_deleted, unnest({child.items_column}) AS raw FROM {items_from}"
        )
        with _staged(conn, "_children", typed_select(child.columns, "raw", f"({items})")) as staged:
            _replace_from(conn, child.table, staged, delete=delete)
        return
    # The lists are cut out of the parents' raw JSON first: unnesting straight from a chunk
    # of large raw objects held them all in memory (a 5,000-subscription chunk needed more
    # than the writer's 128 MB and failed the sync).
    lists = (
        f"SELECT client_id, id AS {child.parent_column}, _synced_at, "
        f"json_extract(raw, '{_json_path(child.path)}') AS _list FROM {parents}"
    )
    with _staged(conn, "_child_lists", lists) as child_lists:
        items = (
            f"SELECT client_id, {child.parent_column}, _synced_at, false AS is_deleted, "
            f"unnest(CAST(_list AS JSON[])) AS raw FROM {child_lists}"
        )
        with _staged(conn, "_children", typed_select(child.columns, "raw", f"({items})")) as staged:
            _replace_from(conn, child.table, staged, delete=delete)


def flag_unseen_as_deleted(
    conn: duckdb.DuckDBPyConnection, table: str, client_id: str, listed_since: datetime
) -> int:
    """After a complete full listing: rows it did not touch are gone from Stripe."""
    result = conn.execute(
        f"UPDATE stripe.{table} SET is_deleted = true WHERE client_id = ? "
        "AND _synced_at < ? AND NOT coalesce(is_deleted, false)",
        [client_id, listed_since],
    ).fetchone()
    flagged = int(result[0]) if result else 0
    if flagged:
        note_written(conn, [client_id], [table])
    return flagged
