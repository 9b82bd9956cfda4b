"""Who may open the warehouse file, and a read-only database kept open between reads.

DuckDB lets one process write a database file at a time, and a writer locks readers
out. Every process (Dagster runs, the CLI, the web page) therefore goes through one
advisory lock file: writers take it exclusively for short transactions, readers take
it shared. Waiting replaces failing.

Opening a DuckDB database costs ~13 ms here, more than most widget queries. So a
process that keeps reading (the report page, a widget loop) keeps its read-only
database, and its shared lock, between reads: it lets go after LINGER_SECONDS
without a read, or as soon as a writer says it is waiting (a shared lock on a second
"intent" file, held only while a writer waits). Holding the shared lock is also what
keeps the cached database current: no writer can commit while it is open.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from engine.warehouse import ClientBusy, waiting_message

LINGER_SECONDS = 0.25
POLL_SECONDS = 0.02
# Turn-taking under load: a writer stands aside this long for waiting readers, and a
# reader this long for waiting writers, before each competes for the lock as usual.
READER_TURN_SECONDS = 1.0
WRITER_TURN_SECONDS = 0.25


class WarehouseBusy(TimeoutError):
    """The warehouse stayed locked by another writer for longer than we wait."""


def _open_lock_file(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def acquire(lock_path: Path, exclusive: bool, timeout: float,
            while_waiting: Callable[[], None] = lambda: None,
            busy: Callable[[], Exception] | None = None,
            readers_flag: Path | None = None) -> int:
    """Take the lock file shared or exclusive; returns the fd whose closing releases it.

    With `readers_flag`, readers and writers take turns: a waiting reader raises the flag,
    and a writer stands aside while it is up (for READER_TURN_SECONDS at most), so readers
    get in at the next release instead of losing every race to queued writers.
    """
    fd = _open_lock_file(lock_path)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    stood_aside = 0.0  # a writer's time spent letting readers go first, this acquire
    with _raised(readers_flag if not exclusive else None):
        while True:
            readers_first = (exclusive and readers_flag is not None
                             and stood_aside < READER_TURN_SECONDS
                             and flag_is_raised(readers_flag))
            if readers_first:
                stood_aside += POLL_SECONDS
            elif _try_flock(fd, mode):
                return fd
            if time.monotonic() > deadline:
                os.close(fd)
                raise (busy or _warehouse_busy(lock_path, timeout))()
            while_waiting()
            time.sleep(POLL_SECONDS)


def readers_flag_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".readers-waiting")


@contextmanager
def _raised(flag: Path | None) -> Iterator[None]:
    if flag is None:
        yield
        return
    with raised_flag(flag):
        yield


def _warehouse_busy(lock_path: Path, timeout: float) -> Callable[[], Exception]:
    return lambda: WarehouseBusy(
        f"The warehouse {lock_path.with_suffix('')} stayed locked by another "
        f"writer for {timeout:.0f}s; try again when the running sync ends.")


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def client_sync_lock(lock_path: Path, client_id: str, timeout: float,
                     on_wait: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """One sync per client at a time, whichever process or path started it.

    Waits (telling `on_wait` once who holds it) rather than failing: the second sync then
    runs incrementally on what the first landed. The lock dies with its process.
    """
    holder = _holder(lock_path)
    told: list[bool] = []

    def tell_once() -> None:
        if not told:
            told.append(True)
            on_wait(waiting_message(client_id, holder))

    fd = acquire(lock_path, exclusive=True, timeout=timeout, while_waiting=tell_once,
                 busy=lambda: ClientBusy(client_id, holder, timeout))
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _holder(lock_path: Path) -> str:
    try:
        return lock_path.read_text(errors="replace").strip()[:200]
    except OSError:
        return ""


@contextmanager
def raised_flag(intent_path: Path) -> Iterator[None]:
    """Say, for as long as this block runs, that someone (a writer, a reader) waits."""
    fd = _open_lock_file(intent_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def flag_is_raised(intent_path: Path) -> bool:
    fd = _open_lock_file(intent_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class SharedReader:
    """One process's read-only database of one warehouse file, shared by its threads."""

    def __init__(self, path: Path, lock_path: Path, intent_path: Path,
                 open_database: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        self.path, self.lock_path, self.intent_path = path, lock_path, intent_path
        self._open_database = open_database
        self._mutex = threading.Lock()
        self._db: duckdb.DuckDBPyConnection | None = None
        self._fd: int | None = None
        self._users = 0
        self._timer: threading.Timer | None = None

    @contextmanager
    def connection(self, timeout: float) -> Iterator[duckdb.DuckDBPyConnection]:
        self._let_waiting_writers_go_first(timeout)
        with self._mutex:
            if self._db is None:
                self._open(timeout)
            self._users += 1
            self._cancel_timer()
            cursor = self._db.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
            with self._mutex:
                self._users -= 1
                if self._users == 0:
                    if flag_is_raised(self.intent_path):
                        self._close()
                    else:
                        self._timer = threading.Timer(LINGER_SECONDS, self.release_idle)
                        self._timer.daemon = True
                        self._timer.start()

    def release_idle(self) -> None:
        """Close the database now unless a read is running."""
        with self._mutex:
            if self._users == 0 and self._db is not None:
                self._close()

    def _let_waiting_writers_go_first(self, timeout: float) -> None:
        """Readers would otherwise keep a polling writer out for as long as they keep reading.

        Never waits holding the mutex: a writer of this process needs it to let go of us.
        """
        deadline = time.monotonic() + min(timeout, WRITER_TURN_SECONDS)
        while self._users == 0 and flag_is_raised(self.intent_path):
            self.release_idle()
            if time.monotonic() > deadline:
                return  # then `acquire` takes turns with the writers
            time.sleep(POLL_SECONDS)

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's handles without touching them."""
        if self._fd is not None:
            os.close(self._fd)
        self._mutex = threading.Lock()
        self._db, self._fd, self._users, self._timer = None, None, 0, None

    def _open(self, timeout: float) -> None:
        fd = acquire(self.lock_path, exclusive=False, timeout=timeout,
                     readers_flag=readers_flag_path(self.lock_path))
        try:
            self._db = self._open_database()
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _close(self) -> None:
        self._cancel_timer()
        if self._db is not None:
            self._db.close()
        if self._fd is not None:
            os.close(self._fd)  # closing releases the shared lock
        self._db, self._fd = None, None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_readers: dict[Path, SharedReader] = {}
_readers_lock = threading.Lock()


def shared_reader(path: Path, lock_path: Path, intent_path: Path,
                  open_database: Callable[[], duckdb.DuckDBPyConnection]) -> SharedReader:
    """This process's reader of the file; `open_database` opens it read-only."""
    key = path.resolve()
    with _readers_lock:
        if key not in _readers:
            _readers[key] = SharedReader(path, lock_path, intent_path, open_database)
        return _readers[key]


def _after_fork_in_child() -> None:
    for reader in _readers.values():
        reader.forget_after_fork()


def _close_all() -> None:
    # Before the interpreter stops daemon threads: one stopped inside DuckDB's C++ aborts.
    for reader in list(_readers.values()):
        reader.release_idle()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
