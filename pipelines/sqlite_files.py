"""Dagster's storage made cheap to open and to write a run's events to.

The migration scripts Dagster checks each file against are read once a process
(`migration_scripts_read_once`). And for its SQLite files (the embedded instance):

A client's run writes ~70 events, each in a connection of its own (Dagster's SQLite event
log opens one per write), and each costs the disk twice over:

- Each commit waits for an fsync by default. In WAL mode, synchronous=NORMAL keeps the files
  consistent whatever happens; a power cut may lose the last events written, never the
  warehouse's rows (DuckDB's own commits).
- When the last connection to a WAL file closes, SQLite checkpoints the log into the file
  and deletes it: an fsync, two unlinks and a new log at the next write, per event. While a
  run writes, this thread keeps one idle connection open on each file it writes (the
  run's own file), so the log is checkpointed once, when the run ends; the shared files
  (runs, the event index, schedules) keep one for the whole process.

Only files under the instance's folder: the connection store's SQLite keeps its full sync.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy import event as sqlalchemy_events
from sqlalchemy.pool import NullPool, Pool

_ROOTS: set[str] = set()
# Engines an event log keeps (`engines_kept`): the index and the files of the runs a
# batch process runs side by side.
KEPT_ENGINES = 16
# Per thread (runs execute side by side in a batch's threads): the files the run in this
# thread keeps open, by path, while `files_kept_open` is active.
_kept = threading.local()
# Dagster's shared files, written by every run and by a batch run checking its clients
# without runs of their own (~17 events a client): one idle connection each, kept for the
# process, so each event does not end with a checkpoint.
SHARED_FILES = ("index.db", "runs.db", "schedules.db")
_shared: dict[str, sqlite3.Connection] = {}
_shared_lock = threading.Lock()


def sqlite_commits_without_fsync(instance: Any) -> None:
    """Dagster's SQLite files under the instance's folder commit without waiting for the disk,
    in WAL mode from their first connection (Dagster turns it on after creating the tables,
    each created in a commit of its own)."""
    root = getattr(instance, "root_directory", None)
    if not root:  # an ephemeral instance: no files
        return
    if not _ROOTS:  # PostgreSQL storage opens no SQLite file there: nothing changes
        sqlalchemy_events.listen(Pool, "connect", _on_connect)
    _ROOTS.add(os.path.join(os.path.realpath(root), ""))


@contextmanager
def files_kept_open() -> Iterator[None]:
    """While a run executes in this thread: each Dagster SQLite file it opens stays open until
    the end, so its write-ahead log is not checkpointed and deleted after every event."""
    if getattr(_kept, "files", None) is not None:  # already kept by an outer run
        yield
        return
    _kept.files = {}
    try:
        yield
    finally:
        files, _kept.files = _kept.files, None
        for connection in files.values():
            connection.close()  # the last one of a file checkpoints it, once


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    files = [row[2] for row in dbapi_connection.execute("PRAGMA database_list") if row[2]]
    ours = [f for f in files if os.path.realpath(f).startswith(tuple(_ROOTS))]
    if not ours:
        return
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
    try:
        wal = dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    except sqlite3.OperationalError:  # another process holds the file: Dagster's way, later
        wal = False
    if not wal:
        return
    for path in ours:  # the shared files: kept for the process (a batch run's own events)
        if os.path.basename(path) in SHARED_FILES and path not in _shared:
            with _shared_lock:
                if path not in _shared:
                    _shared[path] = _idle_reader(path)
    kept = getattr(_kept, "files", None)
    if kept is None:
        return
    for path in ours:
        if path not in kept and path not in _shared:
            kept[path] = _idle_reader(path)


def _idle_reader(path: str) -> sqlite3.Connection:
    """A connection that has read the file once: in WAL mode it holds a shared lock while it
    stays open, so no other connection's close is the last one."""
    connection = sqlite3.connect(path, timeout=30)
    connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return connection


def migration_scripts_read_once() -> None:
    """Dagster's migration scripts read once a process, not once a file.

    Opening each SQLite file (runs, the event index, schedules, each new run's own file)
    Dagster compares its recorded revision with the newest of its ~90 migration scripts,
    which alembic reads and executes anew each time: 3-4 times a CLI sync, ~0.15 s. The
    scripts do not change while the process runs; the revision each file records is still
    read from the file every time."""
    if getattr(ScriptDirectory.from_config, "read_once", False):
        return
    read = ScriptDirectory.from_config.__func__  # type: ignore[attr-defined]
    directories: dict[tuple[type, tuple[tuple[str, str], ...]], ScriptDirectory] = {}
    lock = threading.Lock()

    def from_config(cls: type[ScriptDirectory], config: Config) -> ScriptDirectory:
        # Dagster's three storages name three alembic.ini files with the same options, each
        # in its own folder (`here`).
        options = config.get_section(config.config_ini_section, {})
        key = (cls, tuple(sorted((k, v) for k, v in options.items() if k != "here")))
        with lock:
            if key not in directories:
                directories[key] = read(cls, config)
            return directories[key]

    from_config.read_once = True  # type: ignore[attr-defined]
    ScriptDirectory.from_config = classmethod(from_config)  # type: ignore[assignment]


def engines_kept(storage: Any) -> None:
    """Dagster's SQLite event log keeps its engines: it makes a SQLAlchemy engine for each
    event it writes (two for an asset event) and drops it after, which is most of what an
    event costs once the files stay open. Here it keeps the engines of the last files it
    wrote; an engine holds no connection (each write still opens and closes its own), so
    what is written, and when it is committed, are Dagster's as before."""
    if not isinstance(storage, SqliteEventLogStorage) or hasattr(storage, "engines_kept"):
        return
    engines: OrderedDict[str, Engine] = OrderedDict()

    @contextmanager
    def connect(shard: str) -> Iterator[Connection]:
        with storage._db_lock:  # as Dagster's own _connect: one write at a time
            engine = engines.pop(shard, None) or create_engine(
                storage.conn_string_for_shard(shard), poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            engines[shard] = engine  # the newest last
            while len(engines) > KEPT_ENGINES:
                engines.popitem(last=False)[1].dispose()
            if shard not in storage._initialized_dbs:
                storage._initdb(engine)
                storage._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    storage.engines_kept = engines
    storage._connect = connect
