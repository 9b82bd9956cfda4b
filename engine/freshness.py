"""Whether a client's figures are current: the one rule the widgets (`stale`) and Dagster's
freshness check both apply, judged against the client's own schedule (clients.yaml)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb

from engine.client_config import client_config
from engine.processes import process_gone
from engine.reconcile import PREFIX as RECONCILE_PREFIX
from engine.reporting.tables import FRESHNESS
from engine.warehouse import FAILURES_TABLE, STARTS_TABLE

FRESHNESS_TABLE = FRESHNESS.qualified
GONE = ("The sync stopped before it finished: the process running it is gone (it was "
        "stopped, killed or crashed).")


def read_built_at(conn: duckdb.DuckDBPyConnection, client_id: str) -> datetime | None:
    """When the client's reporting tables were last built (None: never, or no tables yet)."""
    rows = _rows_of(conn, "reporting", "freshness", f"SELECT built_at FROM {FRESHNESS_TABLE}",
                    [client_id])
    return rows[0][0] if rows else None


def last_failure(conn: duckdb.DuckDBPyConnection, client_id: str
                 ) -> tuple[datetime, str] | None:
    """When the client's latest failed sync or build happened, and why."""
    return _failures(conn, [client_id]).get(client_id)


def staleness(client_id: str, built_at: datetime, failure: tuple[datetime, str] | None,
              now: datetime) -> str | None:
    """Why figures built at `built_at` may be wrong now, or None if they are current."""
    if failure is not None and failure[0] > built_at:
        if failure[1].startswith(RECONCILE_PREFIX):
            return (f"{failure[1]} Checked {failure[0]:%Y-%m-%d %H:%M} UTC; these figures "
                    "may be wrong until it adds up again.")
        return (f"The last sync ({failure[0]:%Y-%m-%d %H:%M} UTC) failed: {failure[1]} "
                f"These figures are from the data synced by {built_at:%Y-%m-%d %H:%M} UTC.")
    config = client_config(client_id)
    if now - built_at <= config.stale_after:
        return None
    hours = (now - built_at).total_seconds() / 3600
    age = f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.0f} days"
    return (f"The last successful sync was {age} ago ({built_at:%Y-%m-%d %H:%M} UTC); this "
            f"client's schedule ({config.schedule}) expects one at least every "
            f"{config.stale_after}. Figures may be out of date.")


def freshness_problems(conn: duckdb.DuckDBPyConnection, client_ids: Sequence[str],
                       now: datetime) -> dict[str, str | None]:
    """Why each client's figures are not current (never built included), or None.

    Two queries for any number of clients: the health sensor judges all of them every few
    minutes, and four queries a client were ~3 s a tick at 1,000 clients on the file.
    """
    built = dict(_rows_of(conn, "reporting", "freshness",
                          f"SELECT client_id, built_at FROM {FRESHNESS_TABLE}", client_ids))
    failed = _failures(conn, client_ids)
    return {client: _problem(client, built.get(client), failed.get(client), now)
            for client in client_ids}


def freshness_problem(conn: duckdb.DuckDBPyConnection, client_id: str,
                      now: datetime) -> str | None:
    """Why the client's figures are not current (never built included), or None."""
    return freshness_problems(conn, [client_id], now)[client_id]


def _failures(conn: duckdb.DuckDBPyConnection, client_ids: Sequence[str]
              ) -> dict[str, tuple[datetime, str]]:
    """Each client's latest failed sync: a recorded failure, or a sync whose process died
    before it could record anything (its start is the failure's time). A sync still
    running is no failure."""
    failed = {client: (at, message) for client, at, message in _rows_of(
        conn, "meta", "sync_failures",
        f"SELECT client_id, failed_at, message FROM {FAILURES_TABLE}", client_ids)}
    for client, started_at, owner in _rows_of(
            conn, "meta", "sync_starts",
            f"SELECT client_id, started_at, owner FROM {STARTS_TABLE}", client_ids):
        latest = latest_failure(failed.get(client), (started_at, owner))
        if latest is not None:
            failed[client] = latest
    return failed


def latest_failure(recorded: tuple[datetime, str] | None, started: tuple[datetime, str] | None
                   ) -> tuple[datetime, str] | None:
    """A client's latest failed sync: its recorded failure, or its latest sync start (at,
    process) when that process died before it could record anything."""
    if started is not None and (recorded is None or recorded[0] < started[0]) \
            and process_gone(started[1]):
        return (started[0], GONE)
    return recorded


def _rows_of(conn: duckdb.DuckDBPyConnection, schema: str, table: str, select: str,
             client_ids: Sequence[str]) -> list[tuple]:
    """The clients' rows of a table that may not exist yet (a warehouse never built)."""
    if not conn.execute("SELECT 1 FROM duckdb_tables() WHERE schema_name = ? "
                        "AND table_name = ?", [schema, table]).fetchall():
        return []
    return conn.execute(f"{select} WHERE client_id IN (SELECT unnest(?::VARCHAR[]))",
                        [list(client_ids)]).fetchall()


def _problem(client_id: str, built_at: datetime | None,
             failure: tuple[datetime, str] | None, now: datetime) -> str | None:
    if built_at is None:
        if failure is not None:
            return (f"The last sync ({failure[0]:%Y-%m-%d %H:%M} UTC) failed: {failure[1]} "
                    "No figures have been built for this client yet.")
        return "No sync has built this client's figures yet."
    return staleness(client_id, built_at, failure, now)
