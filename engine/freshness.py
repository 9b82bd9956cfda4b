"""Whether a client's figures are current: the one rule the widgets (`stale`) and Dagster's
freshness check both apply, judged against the client's own schedule (clients.yaml)."""

from __future__ import annotations

from datetime import datetime

import duckdb

from engine.client_config import client_config
from engine.warehouse import last_failure

FRESHNESS_TABLE = "reporting.freshness"


def read_built_at(conn: duckdb.DuckDBPyConnection, client_id: str) -> datetime | None:
    """When the client's reporting tables were last built (None: never, or no tables yet)."""
    if not conn.execute("SELECT 1 FROM duckdb_tables() WHERE schema_name = 'reporting' "
                        "AND table_name = 'freshness'").fetchall():
        return None
    row = conn.execute(f"SELECT built_at FROM {FRESHNESS_TABLE} WHERE client_id = ?",
                       [client_id]).fetchone()
    return row[0] if row else None


def staleness(client_id: str, built_at: datetime, failure: tuple[datetime, str] | None,
              now: datetime) -> str | None:
    """Why figures built at `built_at` may be wrong now, or None if they are current."""
    if failure is not None and failure[0] > built_at:
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


def freshness_problem(conn: duckdb.DuckDBPyConnection, client_id: str,
                      now: datetime) -> str | None:
    """Why the client's figures are not current (never built included), or None."""
    built_at = read_built_at(conn, client_id)
    failure = last_failure(conn, client_id)
    if built_at is None:
        if failure is not None:
            return (f"The last sync ({failure[0]:%Y-%m-%d %H:%M} UTC) failed: {failure[1]} "
                    "No figures have been built for this client yet.")
        return "No sync has built this client's figures yet."
    return staleness(client_id, built_at, failure, now)
