"""The warehouse as one DuckDB file: one writer at a time, readers shared and kept open.

Who may open the file when (an advisory lock file, writers waiting their turn, a reader
kept open between reads) lives in engine/warehouse_lock.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path

import duckdb

from engine.schema_digests import apply_unless_recorded, digest_of
from engine.table_comments import comment_statements
from engine.user_errors import FAILED, USAGE, CommandError
from engine.warehouse import (
    WRITER_CONFIG,
    Warehouse,
    create_schema,
    schema_statements,
    stripe_table_docs,
)
from engine.warehouse_lock import (
    SharedReader,
    acquire,
    client_sync_lock,
    flag_is_raised,
    raised_flag,
    readers_flag_path,
    shared_reader,
)

# Rows per row group written by our writers (DuckDB's default is 122,880). A checkpoint
# rewrites the open row group and merges small neighbours (vacuum) in memory: with the
# default that rewrote up to ~120,000 raw objects at once, 100-250 MB above the rest of
# a sync. Readers read row groups of any size; the file does not remember this setting.
ROW_GROUP_SIZE = 8_192
# The file's own writers (a sync's chunk commits, the reporting build, purges) also run on
# one thread with a 64 MB target: each DuckDB thread keeps buffers of its own (at 2 threads
# ~50 MB more for the same sync, and no faster: the chunks are small). What does not fit
# spills to `<warehouse>.tmp`; a transaction that still runs out of memory runs again with
# a larger target (`in_transaction`), so the target never fails a sync.
FILE_WRITER_CONFIG = {"threads": 1, "memory_limit": "64MB"}
# The file is only ever DuckDB's, and what DuckDB needs is built in: given a SQLite file
# instead, DuckDB would otherwise download its sqlite extension to read it.
NO_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class FileWarehouse(Warehouse):
    """The Warehouse interface on one DuckDB file (see the module docstring)."""

    def __init__(self, path: Path | str, lock_timeout: float = 900.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"FileWarehouse({str(self.path)!r})"

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def intent_path(self) -> Path:
        return self.path.with_name(self.path.name + ".writer-waiting")

    def client_lock(self, client_id: str, timeout: float = 3600.0,
                    on_wait: Callable[[str], None] = lambda _: None
                    ) -> AbstractContextManager[None]:
        lock_path = self.path.with_name(f"{self.path.name}.clients") / f"{client_id}.lock"
        return client_sync_lock(lock_path, client_id, timeout, on_wait)

    def readers_waiting(self) -> bool:
        return flag_is_raised(readers_flag_path(self.lock_path))

    def _shared_reader(self) -> SharedReader:
        return shared_reader(self.path, self.lock_path, self.intent_path,
                             lambda: _open_read_only(self.path))

    def _writer_config(self) -> dict[str, str | bool]:
        # What does not fit the memory target spills beside the warehouse, on its disk.
        return {**WRITER_CONFIG, **FILE_WRITER_CONFIG, **NO_EXTENSIONS,
                "temp_directory": str(self.path) + ".tmp"}

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The file to this process alone: waiting readers and writers queue behind it."""
        own_reader = self._shared_reader()
        with raised_flag(self.intent_path):
            own_reader.release_idle()  # this process's own cached reader must not block us
            fd = acquire(self.lock_path, exclusive=True, timeout=self.lock_timeout,
                         while_waiting=own_reader.release_idle,
                         readers_flag=readers_flag_path(self.lock_path))
        try:
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive, short-lived read-write connection. Keep the work inside small."""
        with self._exclusive():
            conn = _open_writable(self.path, self._writer_config())
            try:
                if not self._schema_ready:
                    _ensure_stripe_schema(conn)
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
        with self._shared_reader().connection(self.lock_timeout) as conn:
            yield conn

    def _erase_history(self, tables: list[str]) -> None:
        """A DELETE only marks rows deleted: their bytes stay in the file's blocks, and a
        checkpoint frees blocks without clearing them. So the file is copied, live rows
        only, into a new one that replaces it (the whole file is written once)."""
        copy = self.path.with_name(self.path.name + ".purge")
        with self._exclusive():
            # Everything into the file first: a write-ahead log left beside it would be
            # replayed onto the copy.
            with _open_writable(self.path, self._writer_config()) as conn:
                conn.execute("CHECKPOINT")
            copy.unlink(missing_ok=True)
            conn = duckdb.connect(config=self._writer_config())
            try:
                conn.execute(f"ATTACH {_quoted(str(self.path))} AS old (READ_ONLY)")
                conn.execute(f"ATTACH {_quoted(str(copy))} AS new "
                             f"(ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
                conn.execute("COPY FROM DATABASE old TO new")
                conn.execute("DETACH new")
            except BaseException:
                copy.unlink(missing_ok=True)
                raise
            finally:
                conn.close()
            _fsync(copy)
            os.replace(copy, self.path)  # readers open the file anew after the lock


def _ensure_stripe_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """The stripe.* and meta.* tables and their comments, unless the file records them."""
    apply_unless_recorded(conn, "stripe", _stripe_schema_digest(), lambda: create_schema(conn))


@cache  # the specs are fixed for the process
def _stripe_schema_digest() -> str:
    docs = stripe_table_docs()
    return digest_of([*schema_statements(), *(s for doc in docs for s in comment_statements(doc))])


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_writable(path: Path, config: dict[str, str | bool]) -> duckdb.DuckDBPyConnection:
    """The file attached under the name `duckdb.connect(path)` gives it, with our row-group
    size (an ATTACH option only), and made the default catalog."""
    conn = duckdb.connect(config=config)
    try:
        alias = '"' + path.stem.replace('"', '""') + '"'
        conn.execute(f"ATTACH {_quoted(str(path))} AS {alias} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
        conn.execute(f"USE {alias}")
    except duckdb.Error as error:
        conn.close()
        raise (_unusable(path, error, writing=True) or error) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=True, config=NO_EXTENSIONS)
    except duckdb.Error as error:
        raise (_unusable(path, error, writing=False) or error) from None


def _unusable(path: Path, error: duckdb.Error, writing: bool) -> CommandError | None:
    """What to do when the warehouse setting names something DuckDB cannot open, or None."""
    detail = re.sub(r"^[A-Za-z ]*Error: ", "", (str(error).strip().splitlines() or [""])[0])[:200]
    text = detail.lower()
    if path.is_dir():
        return CommandError(
            f"The warehouse {path} is a folder, not a DuckDB file: point "
            "STRIPE_REPORTS_WAREHOUSE at a file (a new one is made on the first sync). "
            "Nothing was changed.", USAGE)
    if _first_bytes(path).startswith(b"SQLite format 3"):
        return CommandError(
            f"The warehouse {path} is a SQLite database, not a DuckDB file: point "
            "STRIPE_REPORTS_WAREHOUSE at the DuckDB warehouse (a new one is made on the first "
            "sync). Nothing was changed.", USAGE)
    if "read-only file system" in text or "permission denied" in text:
        verb, able = ("write", "writable") if writing else ("read", "readable")
        return CommandError(
            f"Cannot {verb} the warehouse {path}: it is read-only or not {able} for this "
            f"user ({detail}). Make it {able}, or point STRIPE_REPORTS_WAREHOUSE at a "
            f"{able} copy; nothing was changed.", FAILED)
    if path.is_file() and (_first_bytes(path)[8:12] != b"DUCK" or "read enough bytes" in text
                           or "corrupt" in text or "checksum" in text):
        return CommandError(
            f"The warehouse {path} is damaged or not a database ({detail}). Point "
            "STRIPE_REPORTS_WAREHOUSE at the right file, or move this one aside and run "
            "`stripe-reports sync --all` to build a new one; nothing was changed.", FAILED)
    return None


def _first_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(16)
    except OSError:
        return b""
