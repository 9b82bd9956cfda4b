"""`LakeWarehouse`: the Warehouse interface on DuckLake (see engine/lake/__init__.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import timedelta
from pathlib import Path

import duckdb

from engine.lake.catalog_indexes import ensure_catalog_indexes
from engine.lake.client_copy import copies_of
from engine.lake.client_lock import postgres_client_lock
from engine.lake.database import LakeDatabase, lake_database
from engine.lake.maintenance import PURGE_NOTE, LakeMaintenance, erase_history, maintain
from engine.lake.retrying import RetryingConnection
from engine.lake.target import catalog_dsn, masked
from engine.lake.turns import CommitTurn
from engine.settings import load_settings
from engine.user_errors import FAILED, USAGE, CommandError
from engine.warehouse import Warehouse, create_schema


class LakeWarehouse(Warehouse):
    """Many writers on many machines commit side by side; readers read one snapshot."""

    purge_note = PURGE_NOTE

    def __init__(self, target: str, lock_timeout: float = 900.0,
                 data_path: str | None = None) -> None:
        self.target = target.strip()
        self.lock_timeout = lock_timeout
        self.dsn = catalog_dsn(self.target)
        self.data_path = data_path or load_settings().lake_data_path
        if not self.data_path:
            raise CommandError(
                "STRIPE_REPORTS_LAKE_DATA_PATH is not set: a DuckLake warehouse needs a "
                "folder (or an object-storage URL) for its data files, the same one on "
                "every machine. Set it, or unset STRIPE_REPORTS_WAREHOUSE to use the "
                "embedded DuckDB file.", USAGE)

    def __repr__(self) -> str:
        return f"LakeWarehouse({masked(self.target)!r})"

    def client_lock(self, client_id: str, timeout: float = 3600.0,
                    on_wait: Callable[[str], None] = lambda _: None
                    ) -> AbstractContextManager[None]:
        return postgres_client_lock(self.dsn, client_id, timeout, on_wait)

    def readers_waiting(self) -> bool:
        return False  # readers read committed snapshots: they never wait for a writer

    def _database(self) -> LakeDatabase:
        folder = Path(self.data_path)
        if "://" not in self.data_path and not folder.is_dir():  # object storage needs none
            folder.mkdir(parents=True, exist_ok=True)
        return lake_database(self.target, self.data_path)

    def _check_data_folder_writable(self) -> None:
        """A read-only data folder would fail a writer at its first file, deep in a sync."""
        if "://" in self.data_path or os.access(self.data_path, os.W_OK):
            return
        raise CommandError(
            f"Cannot write the DuckLake data folder {self.data_path} "
            "(STRIPE_REPORTS_LAKE_DATA_PATH): it is read-only or not writable for this user. "
            "Make it writable, or point STRIPE_REPORTS_LAKE_DATA_PATH at the writable folder "
            "every machine shares; nothing was changed.", FAILED)

    def writer(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A read-write connection; concurrent writers commit without waiting for each other."""
        self._database()  # the folder made first, if it is missing
        self._check_data_folder_writable()
        return self._connection()

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection, the schema in place (which writes the catalog only)."""
        database = self._database()
        with database.session() as cursor:
            conn = RetryingConnection(cursor, CommitTurn(database.turn_sessions))
            try:
                if not database.schema_ready:
                    # First, while no commit turn holds a session: the one it takes is reused.
                    ensure_catalog_indexes(database.turn_sessions)
                    _create_schema(conn)
                    database.schema_ready = True
                yield conn  # type: ignore[misc]  # a DuckDB connection in all that is used
            finally:
                conn.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection reading one committed snapshot for the whole block."""
        database = self._database()
        if not database.schema_ready:
            with self._connection():  # not a writer: a read-only data folder is read
                pass
        with database.session() as conn:
            try:
                conn.begin()  # every query of the block sees the same snapshot
                yield conn
            finally:
                with suppress(duckdb.Error):
                    conn.rollback()

    def client_reader(self, client_id: str) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """The client's reporting rows and sync records at the latest snapshot, from this
        process's copy (engine/lake/client_copy.py): a catalog query per table was ~20 ms."""
        database = self._database()
        if not database.schema_ready:
            with self._connection():  # the schema in place, as `reader` does
                pass
        return copies_of(database).reader(client_id)

    def maintain(self, keep_snapshots: timedelta, keep_unused_files: timedelta
                 ) -> LakeMaintenance:
        """The nightly pass (engine/lake/maintenance.py)."""
        return maintain(self._database(), keep_snapshots, keep_unused_files)

    def _erase_history(self, tables: list[str]) -> None:
        erase_history(self._database(), tables)


def _create_schema(conn: RetryingConnection) -> None:
    # One transaction, one catalog commit: statement by statement took seconds.
    conn.begin()
    create_schema(conn)  # type: ignore[arg-type]  # a DuckDB connection in all it uses
    conn.commit()
