"""Known failures turned into one line that says what to do (the CLI's top-level handler).

`explain(error)` maps what a user can cause or fix (a bad name or file, the wrong master
key, a damaged store or warehouse, a full disk, a read-only folder) to a message and an
exit code (docs/interface.md: 1 a client or check failed, 2 bad usage or unknown name); any other
exception is a bug and keeps its traceback. Exit codes here: 2 for what the user typed or
configured (arguments, clients.yaml, the master key), 1 for the machine's state (damaged
files, full disk, read-only folder, a port in use).
"""

from __future__ import annotations

import difflib
import errno
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.settings import load_settings

USAGE, FAILED = 2, 1
_DISK_FULL = ("database or disk is full", "no space left on device", "file too large",
              "disk quota exceeded")
_READ_ONLY = ("readonly database", "read-only file system", "permission denied",
              "unable to open database file")
# A PostgreSQL server stopped, restarted or unreachable, as psycopg2, SQLAlchemy and DuckDB's
# postgres extension word it.
_LOST_DATABASE = ("connection refused", "server closed the connection", "terminating connection",
                  "could not connect to server", "the database system is starting up",
                  "the database system is shutting down", "connection already closed",
                  "no connection to the server", "could not receive data from server",
                  "could not send data to server", "ssl connection has been closed",
                  "connection to server at")
# DuckDB's postgres extension raises its base `Error` for a dropped catalog connection, and
# DuckDB an InvalidInputException ("Attempting to fetch from an unsuccessful query result")
# when the dropped connection failed a query whose result was then read.
_DATABASE_CLASSES = ("OperationalError", "InterfaceError", "IOException",
                     "ConnectionException", "DatabaseError", "Error", "InvalidInputException")
# DuckDB's words when a DuckLake transaction's catalog connection dropped mid-statement and
# a later step of it ran: on a lake warehouse nothing else leaves a transaction aborted.
_LAKE_TRANSACTION_ABORTED = "current transaction is aborted"
LOST_DATABASE = ("Lost the connection to PostgreSQL: the server stopped, restarted or cannot be "
                 "reached. Check that it is running and accepts connections, then run the "
                 "command again; what was stored is intact, and a sync resumes where it stopped.")
_NOT_A_DATABASE = ("file is not a database", "database disk image is malformed",
                   "not a valid duckdb database file")


@dataclass(frozen=True)
class UserError:
    message: str
    exit_code: int
    http_status: int = 503


class CommandError(Exception):
    """A refusal with its message and exit code, raised where the problem is found."""

    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UnknownClient(CommandError, LookupError):
    def __init__(self, client_id: str, known: list[str]) -> None:
        close = difflib.get_close_matches(client_id, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(
            f"Unknown client '{client_id}'.{hint} `stripe-reports clients` lists the clients; "
            f"connect a new one with `stripe-reports connect {client_id}`. Nothing was changed.")
        self.client_id = client_id


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, what it wraps (SQLAlchemy's .orig) and its causes."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [getattr(current, "orig", None), current.__cause__]


def _detail(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text[:200]


def _is_duckdb(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in ("duckdb", "_duckdb")


def _where(error: BaseException) -> Path:
    """The file the error is about: its own file name, else the store or the warehouse."""
    # SQLAlchemy and the settings: imported only when a storage error is being explained.
    from sqlalchemy.engine import make_url

    from engine.settings import load_settings

    name = getattr(error, "filename", None)
    if name:
        return Path(name)
    settings = load_settings()
    if _is_duckdb(error):
        return settings.warehouse_path
    database = make_url(settings.connections_url).database
    return Path(database) if database else settings.home


def _disk_full(where: Path, detail: str) -> UserError:
    folder = where.parent
    try:
        free = f"; {shutil.disk_usage(folder).free // 2**20:,} MiB free there"
    except OSError:
        free = ""
    return UserError(
        f"Could not write {where}: the disk is full or the file reached a size limit "
        f"({detail}{free}). Free some space (`df -h {folder}`) and run the command again; "
        "what was stored before is intact.", FAILED)


def _read_only(where: Path, detail: str) -> UserError:
    return UserError(
        f"Cannot write {where}: its folder is read-only or not writable for this user "
        f"({detail}). Make {where.parent} writable, or set STRIPE_REPORTS_HOME to a writable "
        "folder; nothing was changed.", FAILED)


def _not_a_database(where: Path, detail: str, duck: bool) -> UserError:
    if duck:
        fix = ("Point STRIPE_REPORTS_WAREHOUSE at the right file, or move this one aside and "
               "run `stripe-reports sync --all` to build a new one")
        what = "warehouse"
    else:
        fix = ("Restore it from a backup, or point STRIPE_REPORTS_CONNECTIONS_URL at the "
               "right store")
        what = "connection store"
    return UserError(f"The {what} {where} is damaged or not a database ({detail}). {fix}; "
                     "nothing was changed.", FAILED)


def lost_database(class_name: str, text: str) -> bool:
    """Whether an error (its class's name and its text) is a lost PostgreSQL connection."""
    lowered = text.lower()
    if class_name.rsplit(".", 1)[-1] not in _DATABASE_CLASSES:
        return False
    if any(s in lowered for s in _LOST_DATABASE):
        return True
    return _LAKE_TRANSACTION_ABORTED in lowered and bool(load_settings().warehouse_target)


def _storage(error: BaseException) -> UserError | None:
    """A full disk, a read-only folder or a damaged file, from the OS, SQLite or DuckDB."""
    storage = isinstance(error, OSError | sqlite3.Error) or _is_duckdb(error)
    if not storage:
        return None
    text, code = str(error).lower(), getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or any(s in text for s in _DISK_FULL):
        return _disk_full(_where(error), _detail(error))
    if "disk i/o error" in text or code == errno.EIO:
        return _disk_full(_where(error), _detail(error))
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or any(s in text for s in _READ_ONLY):
        return _read_only(_where(error), _detail(error))
    if any(s in text for s in _NOT_A_DATABASE):
        return _not_a_database(_where(error), _detail(error), _is_duckdb(error))
    return None


def _known(error: BaseException) -> UserError | None:
    # Imported when an error is explained: the store (SQLModel) costs half a second to load.
    from engine.client_config import ClientsFileError
    from engine.connection_store import InvalidClientId
    from engine.encryption import MasterKeyError
    from engine.postgres_check import DatabaseUnreachable
    from engine.settings import SettingsError

    if isinstance(error, CommandError):
        return UserError(str(error), error.exit_code, 404 if isinstance(error, LookupError)
                         else 400)
    if isinstance(error, InvalidClientId | ClientsFileError | MasterKeyError | SettingsError):
        return UserError(str(error), USAGE, 400 if isinstance(error, InvalidClientId) else 503)
    if isinstance(error, DatabaseUnreachable):
        return UserError(str(error), FAILED)
    if lost_database(type(error).__name__, str(error)):
        return UserError(LOST_DATABASE, FAILED)
    return _storage(error)


def explain(error: BaseException) -> UserError | None:
    """The message and exit code for a failure the user can act on, else None (a bug)."""
    for current in _chain(error):
        known = _known(current)
        if known is not None:
            return known
    return None
