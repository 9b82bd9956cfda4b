"""DuckLake: one warehouse that writers on many machines share.

`STRIPE_REPORTS_WAREHOUSE=ducklake:postgres:dbname=… host=… port=… user=…` keeps the
catalog in PostgreSQL and the data files under `STRIPE_REPORTS_LAKE_DATA_PATH`. There is no
lock file: writers build their transactions side by side and DuckLake orders the commits
(optimistic concurrency). Two commits that touch the same table logically conflict (one
deleted rows from a table the other inserted into, both replaced a macro): the loser's
transaction is re-run on the newer snapshot (`RetryingConnection`), in its turn
(`CommitTurn`, a PostgreSQL advisory lock), so it cannot lose again. Readers read inside one
transaction, so a widget's queries all see one committed snapshot. One sync per client at a
time is a PostgreSQL advisory lock on the catalog database too, so both hold across machines.

The extensions come from the `duckdb-extension-*` wheels, loaded by path: DuckDB never
downloads anything here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg2

from engine.settings import DUCKLAKE_PREFIX, load_settings
from engine.user_errors import FAILED, USAGE, CommandError
from engine.warehouse import WRITER_CONFIG, Warehouse, schema_statements
from engine.warehouse_lock import ClientBusy

POSTGRES_CATALOG = DUCKLAKE_PREFIX + "postgres:"
ALIAS = "lake"
# A conflicting transaction is re-run in its turn; only a writer that takes no turns (another
# program on the same catalog) can make that conflict again, so few attempts are needed.
COMMIT_ATTEMPTS = 5
LOCK_POLL_SECONDS = 0.2
# The advisory-lock namespace of per-client sync locks (pg_locks.classid): "SREP".
LOCK_NAMESPACE = 0x53524550
# The commit turn's advisory lock (see CommitTurn): namespace "SRET", key 0.
TURN_NAMESPACE = 0x53524554
# Sessions kept for later turns, per process: as many as its writers commit at once.
IDLE_TURN_SESSIONS = 4
# A writer waits at most this long for its turn to commit, then fails with a message.
TURN_TIMEOUT_SECONDS = 600
# The checkpoint setting is the embedded file's; DuckLake writes Parquet files instead. No
# memory target either: DuckLake keeps the catalog's file list in it, and at ~580 clients
# (~11,000 data files) a 128 MB target failed syncs with "Failed to get table information from
# DuckLake: could not allocate". Rows still spill to the temp folder; nightly maintenance
# keeps the file list short.
LAKE_CONFIG = {k: v for k, v in WRITER_CONFIG.items()
               if k not in ("checkpoint_threshold", "memory_limit")}


def is_lake_target(target: str | os.PathLike[str]) -> bool:
    return os.fspath(target).startswith(DUCKLAKE_PREFIX)


def masked(target: str) -> str:
    """The catalog as it may be shown: a password written into it is hidden."""
    return re.sub(r"(password\s*=\s*)\S+", r"\1…", target)


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


def _catalog_dsn(target: str) -> str:
    if not target.startswith(POSTGRES_CATALOG):
        raise CommandError(
            f"STRIPE_REPORTS_WAREHOUSE={masked(target)!r}: only a PostgreSQL catalog is "
            "supported (`ducklake:postgres:dbname=… host=… port=… user=…`); writers on "
            "several machines share it.", USAGE)
    return target[len(POSTGRES_CATALOG):].strip()


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class LakeDatabase:
    """One process's DuckDB with the lake attached; every reader and writer is a cursor of it."""

    def __init__(self, target: str, data_path: str) -> None:
        self.target, self.data_path = target, data_path
        self._db: duckdb.DuckDBPyConnection | None = None
        self._mutex = threading.Lock()
        # Once per process, not per Warehouse object: widgets make one for every call.
        self.schema_ready = False
        self.turn_sessions = TurnSessions(_catalog_dsn(target))

    def cursor(self) -> duckdb.DuckDBPyConnection:
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
                db.execute(f"LOAD {_quoted(str(extension_path(name)))}")
            db.execute(f"ATTACH {_quoted(self.target)} AS {ALIAS} "
                       f"(DATA_PATH {_quoted(self.data_path)})")
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
        self.turn_sessions = TurnSessions(self.turn_sessions.dsn)

    def close(self) -> None:
        self.turn_sessions.close()
        with self._mutex:
            if self._db is not None:
                self._db.close()
            self._db = None


_databases: dict[tuple[str, str], LakeDatabase] = {}
_inherited: list[Any] = []  # what a forked child must neither use nor close
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


def _forget_after_fork() -> None:
    for database in _databases.values():
        database.forget()


os.register_at_fork(after_in_child=_forget_after_fork)


def is_conflict(error: BaseException) -> bool:
    """A commit DuckLake refused because another transaction changed the same thing."""
    return isinstance(error, duckdb.TransactionException) and "conflict" in str(error).lower()


# Transactions this process ran again after a conflict (benchmarks and tests report it).
retried_commits = 0


def _count_retry() -> None:
    global retried_commits
    retried_commits += 1


_TRANSACTION_VERB = re.compile(
    r"^\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT)\b(\s+TRANSACTION)?\s*;?\s*$", re.IGNORECASE)
_VERBS = {"begin": "begin", "start": "begin", "commit": "commit", "end": "commit",
          "rollback": "rollback", "abort": "rollback"}


class TurnSessions:
    """Idle PostgreSQL sessions for commit turns, kept between writers of one process:
    opening one for every writer took ~4% of a busy run worker, and a server process each."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._idle: list[Any] = []
        self._mutex = threading.Lock()

    def take(self) -> Any:
        with self._mutex:
            if self._idle:
                return self._idle.pop()
        session = psycopg2.connect(
            self.dsn, application_name=f"stripe-reports writer (pid {os.getpid()})",
            connect_timeout=30, options=f"-c lock_timeout={TURN_TIMEOUT_SECONDS * 1000}")
        session.autocommit = True
        return session

    def give_back(self, session: Any) -> None:
        with self._mutex:
            if len(self._idle) < IDLE_TURN_SESSIONS:
                self._idle.append(session)
                return
        session.close()

    def close(self) -> None:
        with self._mutex:
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()


class CommitTurn:
    """The turn to commit to the lake: a PostgreSQL advisory lock on the catalog database.

    DuckLake detects conflicts per table (a delete and an insert into the same table, by
    any clients), so under several writers a long transaction that lost can lose again on
    every re-run while shorter ones keep committing: one client build took 14.5 s for
    0.7 s of work, re-run 11 times. Every commit therefore takes the turn briefly, and a
    transaction that conflicted is re-run holding the turn from its start to its commit:
    nobody commits in between, so the re-run cannot conflict again. The lock belongs to a
    session of this process's own, so it ends with the process if that dies.
    """

    def __init__(self, sessions: TurnSessions) -> None:
        self._sessions = sessions
        self._session: Any = None
        self._clean = True  # False once a lock or unlock failed: the session is not reused

    @contextmanager
    def held(self) -> Iterator[None]:
        cursor = self._cursor()
        self._clean = False
        try:
            cursor.execute("SELECT pg_advisory_lock(%s, 0)", (TURN_NAMESPACE,))
        except psycopg2.errors.LockNotAvailable:
            raise CommandError(
                f"Waited {TURN_TIMEOUT_SECONDS} s for a turn to commit to the DuckLake "
                "warehouse: another writer held it all along. Look for a stuck sync (its "
                "session in pg_stat_activity on the catalog database), then run again.",
                FAILED) from None
        try:
            yield
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, 0)", (TURN_NAMESPACE,))
            self._clean = True

    def _cursor(self) -> Any:
        if self._session is None:
            self._session = self._sessions.take()
        return self._session.cursor()

    def close(self) -> None:
        if self._session is None:
            return
        if self._clean and not self._session.closed:
            self._sessions.give_back(self._session)
        else:
            self._session.close()  # ends the session: a turn it may still hold is released
        self._session = None


class RetryingConnection:
    """A writer connection whose transactions are re-run when DuckLake reports a conflict.

    Within a transaction it keeps what was done (statements, registered Arrow tables) and,
    if the commit conflicts, runs it all again on the newer snapshot, in its turn
    (`CommitTurn`). That is sound here because every write is one client's and one client
    syncs at a time (`client_lock`): the other transaction changed other clients' rows, so
    every statement and every decision taken on what it read come out the same. A
    statement outside a transaction is its own transaction and is simply run again.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection, turn: CommitTurn) -> None:
        self._conn = conn
        self._turn = turn
        self._log: list[tuple[str, tuple[Any, ...]]] | None = None

    def execute(self, query: str, parameters: Any = None) -> Any:
        verb = _TRANSACTION_VERB.match(query)
        if verb:
            getattr(self, _VERBS[verb.group(1).lower()])()
            return self._conn
        if self._log is not None:
            self._log.append(("execute", (query, parameters)))
            return self._conn.execute(query, parameters)
        return self._autocommit(lambda: self._conn.execute(query, parameters))

    def register(self, name: str, data: Any) -> Any:
        if self._log is not None:
            self._log.append(("register", (name, data)))
        return self._conn.register(name, data)

    def unregister(self, name: str) -> Any:
        if self._log is not None:
            self._log.append(("unregister", (name,)))
        return self._conn.unregister(name)

    def begin(self) -> RetryingConnection:
        self._conn.begin()
        self._log = []
        return self

    def commit(self) -> RetryingConnection:
        log, self._log = self._log or [], None
        with self._turn.held():
            for attempt in range(1, COMMIT_ATTEMPTS + 1):
                try:
                    self._conn.commit()
                    return self
                except duckdb.Error as error:
                    self._rollback_quietly()
                    # Past the first attempt only a writer outside the turns can have won.
                    if not is_conflict(error) or attempt == COMMIT_ATTEMPTS:
                        raise
                _count_retry()
                self._replay(log)
        return self

    def rollback(self) -> RetryingConnection:
        self._log = None
        self._rollback_quietly()
        return self

    def close(self) -> None:
        self._turn.close()
        self._conn.close()

    def __getattr__(self, name: str) -> Any:  # fetchone, description, …: the connection's
        return getattr(self._conn, name)

    def _replay(self, log: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._conn.begin()
        try:
            for method, args in log:
                getattr(self._conn, method)(*args)
        except BaseException:
            self._rollback_quietly()
            raise

    def _rollback_quietly(self) -> None:
        # A failed commit may have ended the transaction already.
        with suppress(duckdb.Error):
            self._conn.rollback()

    def _autocommit(self, run: Callable[[], Any]) -> Any:
        try:
            return run()
        except duckdb.Error as error:
            if not is_conflict(error):
                raise
        _count_retry()
        with self._turn.held():
            return run()


def _lock_key(client_id: str) -> int:
    digest = hashlib.blake2b(client_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _lock_holder(conn: Any, key: int) -> str:
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s AND l.objid = %s AND l.objsubid = 2", (LOCK_NAMESPACE, key))
        row = cursor.fetchone()
    return f"{row[0]} from {row[1] or 'this host'}" if row else "another process"


def _try_lock(conn: Any, key: int) -> bool:
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, key))
        return bool(cursor.fetchone()[0])


@contextmanager
def postgres_client_lock(dsn: str, client_id: str, timeout: float,
                         on_wait: Callable[[str], None]) -> Iterator[None]:
    """One sync per client across machines: an advisory lock on the catalog database.

    Held by a session of its own; the lock ends with that session, so also when the
    process dies. Waits (saying once who holds it) rather than failing.
    """
    me = f"stripe-reports sync {client_id} (pid {os.getpid()} on {os.uname().nodename})"
    conn = psycopg2.connect(dsn, application_name=me[:63], connect_timeout=30)
    try:
        conn.autocommit = True
        key, told = _lock_key(client_id), False
        deadline = time.monotonic() + timeout
        while not _try_lock(conn, key):
            holder = _lock_holder(conn, key)
            if time.monotonic() > deadline:
                raise ClientBusy(
                    f"Another sync of client {client_id!r} ({holder}) kept running for "
                    f"{timeout:.0f}s; this run changed nothing. Try again when it ends, or "
                    "look at its run in the Dagster UI.")
            if not told:
                told = True
                on_wait(f"Another sync of client {client_id!r} is running ({holder}); "
                        "this one waits for it to finish.")
            time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        conn.close()  # ending the session releases the lock


def _create_schema(conn: RetryingConnection) -> None:
    # One transaction, one catalog commit: statement by statement took seconds.
    conn.begin()
    for statement in schema_statements():
        conn.execute(statement)
    conn.commit()


@dataclass(frozen=True)
class LakeMaintenance:
    """What one maintenance pass did: data files and snapshots before and after."""

    files_before: int
    files_after: int
    snapshots_before: int
    snapshots_after: int
    seconds: float


def files_and_snapshots(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """The lake's data and delete files, and its snapshots."""
    files = conn.execute(f"SELECT coalesce(sum(file_count + delete_file_count), 0) "
                         f"FROM ducklake_table_info('{ALIAS}')").fetchone()
    snapshots = conn.execute(f"SELECT count(*) FROM ducklake_snapshots('{ALIAS}')").fetchone()
    return int(files[0]) if files else 0, int(snapshots[0]) if snapshots else 0


class LakeWarehouse(Warehouse):
    """The Warehouse interface on DuckLake (see the module docstring)."""

    def __init__(self, target: str, lock_timeout: float = 900.0,
                 data_path: str | None = None) -> None:
        self.target = os.fspath(target).strip()
        self.path = Path(self.target)  # what messages name; never opened as a file
        self.lock_timeout = lock_timeout
        self.dsn = _catalog_dsn(self.target)
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
        if "://" not in self.data_path:  # a folder here; object storage needs no mkdir
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
        return lake_database(self.target, self.data_path)

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection; concurrent writers commit without waiting for each other."""
        database = self._database()
        conn = RetryingConnection(database.cursor(), CommitTurn(database.turn_sessions))
        try:
            if not database.schema_ready:
                _create_schema(conn)
                database.schema_ready = True
            yield conn  # type: ignore[misc]  # a DuckDB connection in all that is used
        finally:
            conn.close()

    def maintain(self, keep_snapshots: timedelta, keep_unused_files: timedelta
                 ) -> LakeMaintenance:
        """DuckLake's maintenance, the steps of its CHECKPOINT: per table, inlined rows
        flushed, small files merged, files with many deleted rows rewritten; then snapshots
        older than `keep_snapshots` expired and files unused for `keep_unused_files` deleted
        (a reader may still be scanning a newer one).

        Every build and sync adds small files and a snapshot, and DuckLake keeps them all
        until told; the file list each statement reads grows with them. Each step runs in
        the commit turn, as it rewrites files other writers' deletes would refer to; a step
        and a merged file at a time, so a writer waits for one of them, never for a table's
        or the whole pass.
        """
        started = time.monotonic()
        database = self._database()
        conn, turn = database.cursor(), CommitTurn(database.turn_sessions)
        lake = _quoted(ALIAS)
        try:
            files_before, snapshots_before = files_and_snapshots(conn)
            tables = conn.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                  "WHERE database_name = ?", [ALIAS]).fetchall()
            for schema, table in tables:
                where = f"{_quoted(table)}, schema => {_quoted(schema)}"
                with turn.held():
                    conn.execute(f"CALL ducklake_flush_inlined_data({lake}, schema_name => "
                                 f"{_quoted(schema)}, table_name => {_quoted(table)})")
                # One merged file per turn: a large table's merge is many turns, so a writer
                # waits for one file's worth of work (the lake's target file size), never
                # for the whole table.
                for _ in range(max(1, files_before)):  # each merge leaves a file fewer
                    with turn.held():
                        if not conn.execute(f"CALL ducklake_merge_adjacent_files({lake}, "
                                            f"{where}, max_compacted_files => 1)").fetchall():
                            break
                with turn.held():
                    conn.execute(f"CALL ducklake_rewrite_data_files({lake}, {where})")
            with turn.held():
                for step, age in (("expire_snapshots", keep_snapshots),
                                  ("cleanup_old_files", keep_unused_files),
                                  ("delete_orphaned_files", keep_unused_files)):
                    conn.execute(f"CALL ducklake_{step}({lake}, older_than => now() - "
                                 f"INTERVAL '{int(age.total_seconds())} seconds')")
            files_after, snapshots_after = files_and_snapshots(conn)
        finally:
            turn.close()
            conn.close()
        return LakeMaintenance(files_before, files_after, snapshots_before, snapshots_after,
                               time.monotonic() - started)

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection reading one committed snapshot for the whole block."""
        database = self._database()
        if not database.schema_ready:
            self.ensure_schema()
        conn = database.cursor()
        try:
            conn.begin()  # every query of the block sees the same snapshot
            yield conn
        finally:
            with suppress(duckdb.Error):
                conn.rollback()
            conn.close()
