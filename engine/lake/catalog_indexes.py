"""Indexes on the DuckLake catalog's file lists, which DuckLake's PostgreSQL schema leaves out.

Every query of a lake table reads that table's files and their column statistics from the
catalog (`WHERE table_id = … AND column_id = …`). Without an index PostgreSQL reads the
whole list for it, and the list grows with every file any client ever wrote: ~46 files a
client, ~10 statistics rows a file. A quiet client's check read 456,100 statistics rows at
100 clients and 1,650,631 at 300 (benchmarks/lake_catalog_growth.md). DuckLake uses an
index where one exists (duckdb/ducklake#1147 names this one for the statistics); the two
others serve the file lists' `table_id`.
"""

from __future__ import annotations

import psycopg2

from engine.lake.turns import TURN_NAMESPACE, TurnSessions

# name -> the table and columns it indexes (the names say whose they are in `\d`)
CATALOG_INDEXES = {
    "stripe_reports_file_column_stats_table_column":
        "ducklake_file_column_stats (table_id, column_id)",
    "stripe_reports_data_file_table": "ducklake_data_file (table_id)",
    "stripe_reports_delete_file_table": "ducklake_delete_file (table_id)",
}
_BUILDING = 1  # the advisory lock (TURN_NAMESPACE, 1): one process builds them at a time


def ensure_catalog_indexes(sessions: TurnSessions) -> list[str]:
    """The missing indexes built (a writer's first use of the lake, once per process); the
    names built. A role that may not build them (a reader's) leaves them to a writer."""
    session = sessions.take()
    try:
        built = _build_missing(session)
    except psycopg2.Error:
        session.close()  # not given back: it may be broken, or hold the lock
        raise
    sessions.give_back(session)
    return built


def _build_missing(session: psycopg2.extensions.connection) -> list[str]:
    with session.cursor() as cursor:
        if not _missing(cursor):  # a plain read: building would lock out commits
            return []
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", (TURN_NAMESPACE, _BUILDING))
        try:
            missing = _missing(cursor)  # another process may have built them meanwhile
            for name in missing:
                cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {CATALOG_INDEXES[name]}")
            return missing
        except psycopg2.errors.InsufficientPrivilege:
            return []
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", (TURN_NAMESPACE, _BUILDING))


def _missing(cursor: psycopg2.extensions.cursor) -> list[str]:
    cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                   "AND indexname = ANY(%s)", (list(CATALOG_INDEXES),))
    present = {name for (name,) in cursor.fetchall()}
    return [name for name in CATALOG_INDEXES if name not in present]
