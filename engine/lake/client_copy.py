"""One client's reporting rows kept in memory by this process, at the lake's latest snapshot.

Every query on DuckLake reads the snapshot's file list, column statistics and inlined rows
from the PostgreSQL catalog: all widgets of one client were ~130 queries and ~1,000 catalog
round trips, ~3 s where the DuckDB file answers in ~0.2 s. Widgets read only the client's
`reporting.*` rows and its sync records, so a reader for them (`client_reader`) serves a
copy of those rows from an in-memory DuckDB of this process.

The copy is never older than what a fresh reader would see: each read asks the catalog for
its latest snapshot and the tables changed since the copy's (two small queries), and copies
again, at that snapshot, the changed tables only. Any doubt (a table created or dropped,
snapshots expired in between, a catalog it cannot read) copies everything again.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import duckdb

from engine.lake.database import ALIAS, LakeDatabase
from engine.warehouse import FAILURES_TABLE, STARTS_TABLE

# What the widgets read: every reporting table, and the records that say a sync failed.
# Not meta.sync_state: it changes with every chunk of every client's sync.
COPIED_SCHEMAS = ("reporting",)
COPIED_TABLES = (FAILURES_TABLE, STARTS_TABLE)
# Clients whose copies a process keeps, and their rows' size in all (Arrow bytes; the least
# recently read go first; the copy just read always stays, however large).
MAX_CLIENTS = 16
MAX_BYTES = 256 * 1024 * 1024
# Tables copied side by side: each copy waits on catalog round trips, not on the CPU.
COPY_THREADS = 4
_METADATA = f"__ducklake_metadata_{ALIAS}.public"


@dataclass
class _Copy:
    db: duckdb.DuckDBPyConnection = field(default_factory=duckdb.connect)
    snapshot: int | None = None
    tables: dict[int, tuple[str, bool]] = field(default_factory=dict)  # id: (name, by client)
    sizes: dict[str, int] = field(default_factory=dict)  # table: bytes of its rows
    lock: threading.Lock = field(default_factory=threading.Lock)


class ClientCopies:
    """The copies of one LakeDatabase's clients in this process."""

    def __init__(self, database: LakeDatabase) -> None:
        self.database = database
        self._copies: OrderedDict[str, _Copy] = OrderedDict()
        self._lock = threading.Lock()
        self.tables_copied = 0  # how many table copies were made (tests, benchmarks)

    @contextmanager
    def reader(self, client_id: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection whose reporting tables and sync records hold `client_id`'s rows at
        the lake's latest snapshot (other clients' rows are not there)."""
        copy = self._copy_of(client_id)
        with copy.lock:
            self._refresh(copy, client_id)
            cursor = copy.db.cursor()
        self._evict(keep=client_id)
        try:
            cursor.begin()  # a refresh by another thread meanwhile is not seen half-done
            yield cursor
        finally:
            with suppress(duckdb.Error):
                cursor.rollback()
            cursor.close()

    def close(self) -> None:
        with self._lock:
            copies = list(self._copies.values())
            self._copies.clear()
        for copy in copies:
            copy.db.close()

    def _copy_of(self, client_id: str) -> _Copy:
        with self._lock:
            copy = self._copies.pop(client_id, None) or _Copy()
            self._copies[client_id] = copy
            return copy

    def _evict(self, keep: str) -> None:
        # A reader still on an evicted copy keeps its own cursor; closing the database would
        # end that read, so the copy is left to the garbage collector.
        with self._lock:
            for client in list(self._copies):
                held = sum(sum(c.sizes.values()) for c in self._copies.values())
                if len(self._copies) <= MAX_CLIENTS and held <= MAX_BYTES:
                    return
                if client != keep:
                    del self._copies[client]

    def _refresh(self, copy: _Copy, client_id: str) -> None:
        with self.database.session() as lake:
            try:
                lake.begin()
                current = lake.execute(
                    f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0]
                if copy.snapshot == current:
                    return
                changed = (None if copy.snapshot is None
                           else _changed_tables(lake, copy, current))
                rebuild = changed is None
                if changed is None:  # everything, with the list of tables read again
                    copy.tables = _tables(lake)
                    changed = set(copy.tables)
            finally:
                with suppress(duckdb.Error):
                    lake.rollback()
        jobs = [copy.tables[table_id] for table_id in changed if table_id in copy.tables]
        if len(jobs) > 1:
            with ThreadPoolExecutor(min(COPY_THREADS, len(jobs))) as pool:
                fetched = list(pool.map(lambda job: self._fetch(job, client_id, current), jobs))
        else:
            fetched = [self._fetch(job, client_id, current) for job in jobs]
        _replace(copy, fetched, rebuild)
        if rebuild:
            copy.sizes.clear()
        copy.sizes.update((name, rows.nbytes) for name, rows in fetched)
        copy.snapshot = current
        self.tables_copied += len(jobs)

    def _fetch(self, job: tuple[str, bool], client_id: str, snapshot: int):
        name, by_client = job
        where = " WHERE client_id = ?" if by_client else ""
        with self.database.session() as lake:
            rows = lake.execute(f"SELECT * FROM {name} AT (VERSION => {snapshot}){where}",
                                [client_id] if by_client else []).to_arrow_table()
        return name, rows


def _tables(lake: duckdb.DuckDBPyConnection) -> dict[int, tuple[str, bool]]:
    """The copied tables in the lake now: catalog id → (schema.table, has a client_id)."""
    schemas = ", ".join(f"'{s}'" for s in COPIED_SCHEMAS)
    names = ", ".join(f"'{t}'" for t in COPIED_TABLES)
    rows = lake.execute(
        f"SELECT t.table_id, s.schema_name || '.' || t.table_name AS name "
        f"FROM {_METADATA}.ducklake_table t JOIN {_METADATA}.ducklake_schema s "
        "USING (schema_id) WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL "
        f"AND (s.schema_name IN ({schemas}) OR name IN ({names}))").fetchall()
    by_client = {f"{schema}.{table}" for schema, table in lake.execute(
        "SELECT table_schema, table_name FROM information_schema.columns "
        "WHERE column_name = 'client_id' AND table_catalog = current_database()").fetchall()}
    return {table_id: (name, name in by_client) for table_id, name in rows}


def _changed_tables(lake: duckdb.DuckDBPyConnection, copy: _Copy, current: int
                    ) -> set[int] | None:
    """Ids of the tables that commits after the copy's snapshot changed; None: anything may
    have (tables created or dropped, or snapshots missing from the catalog's list)."""
    try:
        rows = lake.execute(
            f"SELECT snapshot_id, changes_made FROM {_METADATA}.ducklake_snapshot_changes "
            "WHERE snapshot_id > ? AND snapshot_id <= ?", [copy.snapshot, current]).fetchall()
    except duckdb.Error:
        return None
    if len(rows) != current - (copy.snapshot or 0):  # expired snapshots: changes unknown
        return None
    changed: set[int] = set()
    for _snapshot, changes in rows:
        for change in (changes or "").split(","):
            kind, _, value = change.partition(":")
            if not kind or "macro" in kind:
                continue
            if kind.startswith(("created_", "altered_", "dropped_")) or not value.isdigit():
                return None  # the tables themselves changed: list and copy them again
            changed.add(int(value))
    return changed & set(copy.tables)


def _replace(copy: _Copy, fetched: list, rebuild: bool) -> None:
    """The fetched tables' rows replaced in one transaction: a reader sees the old or the new.
    `rebuild`: every table made again (the lake's tables or columns changed)."""
    conn = copy.db.cursor()
    try:
        conn.begin()
        existing = {f"{s}.{t}" for s, t in conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}
        if rebuild:
            for name in existing:
                conn.execute(f"DROP TABLE {name}")
            existing = set()
        for name, rows in fetched:
            schema = name.split(".", 1)[0]
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.register("_fetched", rows)
            if name in existing:
                conn.execute(f"DELETE FROM {name}")
                conn.execute(f"INSERT INTO {name} SELECT * FROM _fetched")
            else:
                conn.execute(f"CREATE TABLE {name} AS SELECT * FROM _fetched")
            conn.unregister("_fetched")
        conn.commit()
    except BaseException:
        with suppress(duckdb.Error):
            conn.rollback()
        raise
    finally:
        conn.close()


_copies: weakref.WeakKeyDictionary[LakeDatabase, ClientCopies] = weakref.WeakKeyDictionary()
_copies_lock = threading.Lock()
_inherited: list[object] = []  # a forked child's copies of its parent: neither used nor closed


def copies_of(database: LakeDatabase) -> ClientCopies:
    """The process's client copies of one lake (made at the first client read)."""
    with _copies_lock:
        if database not in _copies:
            _copies[database] = ClientCopies(database)
        return _copies[database]


def close_copies() -> None:
    """Every copy this process holds let go (the next read of each client copies again)."""
    with _copies_lock:
        held = list(_copies.values())
        _copies.clear()
    for copies in held:
        copies.close()


def _forget_after_fork() -> None:
    global _copies
    _inherited.append(_copies)
    _copies = weakref.WeakKeyDictionary()


os.register_at_fork(after_in_child=_forget_after_fork)
