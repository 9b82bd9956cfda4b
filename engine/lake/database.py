"""One process's DuckDB with the lake attached, its extensions loaded from the wheels by path."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from engine.lake.target import catalog_dsn, masked, quoted
from engine.lake.turns import TurnSessions
from engine.user_errors import FAILED, CommandError
from engine.warehouse import WRITER_CONFIG

ALIAS = "lake"
# The checkpoint setting is the embedded file's; DuckLake writes Parquet files instead. No
# memory target either: DuckLake keeps the catalog's file list in it, and at ~580 clients
# (~11,000 data files) a 128 MB target failed syncs with "Failed to get table information from
# DuckLake: could not allocate". Rows still spill to the temp folder; nightly maintenance
# keeps the file list short.
LAKE_CONFIG = {k: v for k, v in WRITER_CONFIG.items()
               if k not in ("checkpoint_threshold", "memory_limit")}
# Lake cursors one process has open at once. Each holds a PostgreSQL connection of the
# catalog while it works, and a first sync writes every stream side by side: unbounded, one
# sync held 27 connections and a third process met "too many clients already" (the server
# default is 100). Commits take turns anyway (engine/lake/turns.py), so more do not help.
SESSIONS_PER_PROCESS = 6



def extension_path(name: str) -> Path:
    """The extension file of the `duckdb-extension-<name>` wheel for this DuckDB."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    version = duckdb.__version__
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
        if path.exists():
            return path
    raise CommandError(
        f"The DuckLake warehouse needs DuckDB's {name} extension for DuckDB {version}: "
        f"install `duckdb-extension-{name.replace('_', '-')}=={version}`, or pin DuckDB "
        "to a version such a wheel exists for (requirements.lock pins both); or unset "
        "STRIPE_REPORTS_WAREHOUSE to use the embedded DuckDB file.", FAILED)



class LakeDatabase:
    """One process's DuckDB with the lake attached; every reader and writer is a cursor of it."""

    def __init__(self, target: str, data_path: str) -> None:
        self.target, self.data_path = target, data_path
        self._db: duckdb.DuckDBPyConnection | None = None
        self._mutex = threading.Lock()
        # Once per process, not per Warehouse object: widgets make one for every call.
        self.schema_ready = False
        self.turn_sessions = TurnSessions(catalog_dsn(target), keep=SESSIONS_PER_PROCESS)
        self._sessions = threading.BoundedSemaphore(SESSIONS_PER_PROCESS)
        self._held = threading.local()  # how many sessions this thread has open

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the lake, within the process's SESSIONS_PER_PROCESS; closed after.

        A thread that has one open already gets a second without waiting: waiting there
        could wait forever, with every session held by threads doing the same."""
        depth = getattr(self._held, "depth", 0)
        if depth == 0:
            self._sessions.acquire()
        self._held.depth = depth + 1
        try:
            cursor = self._cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            self._held.depth = depth
            if depth == 0:
                self._sessions.release()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._mutex:
            if self._db is None:
                self._db = self._open()
            cursor = self._db.cursor()
        cursor.execute(f"USE {ALIAS}")  # the default catalog belongs to each connection
        return cursor

    def _open(self) -> duckdb.DuckDBPyConnection:
        # An in-memory DuckDB spills to ./.tmp by default: the system's temp folder instead.
        config = {**LAKE_CONFIG, "autoinstall_known_extensions": False,
                  "autoload_known_extensions": False,
                  "temp_directory": str(Path(tempfile.gettempdir()) / "stripe-reports-lake")}
        db = duckdb.connect(config=config)
        try:
            for name in ("postgres_scanner", "ducklake"):
                db.execute(f"LOAD {quoted(str(extension_path(name)))}")
            db.execute(f"ATTACH {quoted(self.target)} AS {ALIAS} "
                       f"(DATA_PATH {quoted(self.data_path)})")
        except duckdb.Error as error:
            db.close()
            raise CommandError(
                f"Could not open the DuckLake warehouse {masked(self.target)}: "
                f"{masked(str(error)).splitlines()[0]}. Check that its PostgreSQL catalog "
                "is reachable (the password comes from PGPASSWORD or ~/.pgpass) and that "
                "STRIPE_REPORTS_LAKE_DATA_PATH is writable.", FAILED) from None
        return db

    def forget(self) -> None:
        """In a forked child: the parent's database and sessions are not ours to use or
        close (closing a session would end the parent's), so they are set aside, kept."""
        _inherited.append((self._db, self.turn_sessions))
        self._db, self._mutex, self.schema_ready = None, threading.Lock(), False
        self.turn_sessions = TurnSessions(self.turn_sessions.dsn, keep=SESSIONS_PER_PROCESS)
        self._sessions = threading.BoundedSemaphore(SESSIONS_PER_PROCESS)
        self._held = threading.local()

    def close(self) -> None:
        self.turn_sessions.close()
        with self._mutex:
            if self._db is not None:
                self._db.close()
            self._db = None


_databases: dict[tuple[str, str], LakeDatabase] = {}
_inherited: list[Any] = []  # what a forked child, or work after a lost PostgreSQL, must not close
_databases_lock = threading.Lock()


def lake_database(target: str, data_path: str) -> LakeDatabase:
    with _databases_lock:
        key = (target, data_path)
        if key not in _databases:
            _databases[key] = LakeDatabase(target, data_path)
        return _databases[key]


def close_databases() -> None:
    """Every lake this process opened closed, with its sessions (tests open many)."""
    with _databases_lock:
        opened = list(_databases.values())
        _databases.clear()
    for database in opened:
        database.close()


def set_databases_aside() -> None:
    """After PostgreSQL was lost: later work attaches the lake afresh. DuckDB may have
    invalidated a database whose catalog connection broke mid-statement ("database has been
    invalidated because of a previous fatal error"), and closing one can abort the process,
    so the old ones are kept, never closed; a thread still using one finishes with it."""
    with _databases_lock:
        _inherited.extend(_databases.values())
        _databases.clear()


def _forget_after_fork() -> None:
    for database in _databases.values():
        database.forget()


os.register_at_fork(after_in_child=_forget_after_fork)
