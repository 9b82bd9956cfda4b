"""Building one client's reporting tables from its stripe.* rows, in one transaction.

Readers (widgets, the report page) therefore see either the previous build or the new
one, never half of each. The SQL files beside this module say what each table holds;
this module only runs them in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from assets.reporting.tables import REPORTING_TABLES, ReportingTable
from engine.currencies import exponent_macro_sql
from engine.sql import bound
from engine.warehouse import in_transaction, schema_statements

_STAGE = re.compile(r"CREATE OR REPLACE TEMP TABLE (\w+)", re.IGNORECASE)
# Small helpers the SQL files share, kept in the warehouse so any reader can use them too.
MACROS = (
    # The UTC calendar day of a timestamp, whatever the session's time zone.
    "CREATE OR REPLACE MACRO reporting.utc_day(ts) AS CAST(timezone('UTC', ts) AS DATE)",
    # Minor units (integers) to major units of the currency.
    "CREATE OR REPLACE MACRO reporting.to_major(amount, cur) AS "
    "CAST(amount / pow(10, reporting.currency_exponent(cur)) AS DECIMAL(18, 4))",
    # An amount billed every `count` `interval`s, per month (52 weeks and 365 days a year).
    "CREATE OR REPLACE MACRO reporting.monthly(amount, unit, count) AS CASE unit "
    "WHEN 'year' THEN amount / (12.0 * count) WHEN 'month' THEN amount / (1.0 * count) "
    "WHEN 'week' THEN amount * 52 / (12.0 * count) WHEN 'day' THEN amount * 365 / (12.0 * count) "
    "END",
    # A coupon's amount off in a currency: its currency_options, or its own currency.
    "CREATE OR REPLACE MACRO reporting.coupon_amount_off(coupon, cur) AS coalesce("
    "TRY_CAST(coupon->'currency_options'->cur->>'amount_off' AS BIGINT), "
    "CASE WHEN lower(coupon->>'currency') = cur "
    "THEN TRY_CAST(coupon->>'amount_off' AS BIGINT) END)",
)


@dataclass(frozen=True)
class BuildResult:
    client_id: str
    built_at: datetime
    # table name -> rows the client has in it after the build
    rows: dict[str, int]


def reporting_schema_statements() -> list[str]:
    return [
        "CREATE SCHEMA IF NOT EXISTS reporting",
        exponent_macro_sql(),
        *MACROS,
        *(table.ddl() for table in REPORTING_TABLES),
    ]


def ensure_reporting_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """The stripe.* tables (read) and the reporting.* tables (written), created if missing."""
    for statement in [*schema_statements(), *reporting_schema_statements()]:
        conn.execute(statement)


def _statements(sql: str) -> tuple[list[str], str]:
    """A table's SQL file: staging statements (`CREATE OR REPLACE TEMP TABLE x AS ...;`),
    then the SELECT of its rows."""
    *stages, select = [part.strip() for part in sql.split(";\n") if part.strip()]
    return stages, select.rstrip(";")


def _rebuild(conn: duckdb.DuckDBPyConnection, table: ReportingTable, values: dict) -> int:
    if table.mode == "snapshot":
        delete = f"DELETE FROM {table.qualified} WHERE client_id = $client_id AND day = $today"
    else:
        delete = f"DELETE FROM {table.qualified} WHERE client_id = $client_id"
    conn.execute(delete, bound(delete, values))
    stages, select = _statements(table.select_sql())
    for stage in stages:
        conn.execute(stage, bound(stage, values))
    insert = (
        f"INSERT INTO {table.qualified} BY NAME "
        f"SELECT * FROM (\n{select}\n) ORDER BY {table.order_by}"
    )
    conn.execute(insert, bound(select, values))
    for name in _STAGE.findall("\n".join(stages)):
        conn.execute(f"DROP TABLE IF EXISTS temp.main.{name}")
    counted = conn.execute(
        f"SELECT count(*) FROM {table.qualified} WHERE client_id = ?", [values["client_id"]]
    ).fetchone()
    return int(counted[0]) if counted else 0


def build_reporting_tables(
    conn: duckdb.DuckDBPyConnection,
    client_id: str,
    *,
    now: datetime | None = None,
    tables: tuple[ReportingTable, ...] = REPORTING_TABLES,
) -> BuildResult:
    """Replace one client's rows in every reporting table, in a single transaction.

    `conn` is a read-write connection (Warehouse.writer()) outside a transaction. `now`
    fixes the build time (the last day of the daily tables); tests pass it.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    values: dict[str, object] = {"client_id": client_id, "now": now, "today": now.date()}
    # One transaction; out of memory, it runs again with a larger target (never a failure).
    rows = in_transaction(conn, lambda: _rebuild_all(conn, tables, values))
    return BuildResult(client_id=client_id, built_at=now, rows=rows)


def _rebuild_all(conn: duckdb.DuckDBPyConnection, tables: tuple[ReportingTable, ...],
                 values: dict[str, object]) -> dict[str, int]:
    ensure_reporting_schema(conn)
    return {table.name: _rebuild(conn, table, values) for table in tables}


