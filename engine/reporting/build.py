"""Building one client's reporting tables from its stripe.* rows, in one transaction.

Readers (widgets, the report page) therefore see either the previous build or the new
one, never half of each. The SQL files beside this module say what each table holds;
this module only runs them in order.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import duckdb

from engine.client_config import client_config
from engine.currencies import exponent_macro_sql
from engine.reporting.tables import FRESHNESS, REPORTING_TABLES, ReportingTable
from engine.schema_digests import apply_unless_recorded, digest_of
from engine.sql import bound
from engine.table_comments import apply_comments, comment_statements
from engine.warehouse import (
    FAILURES_TABLE,
    STARTS_TABLE,
    WRITES_TABLE,
    in_transaction,
    schema_statements,
    written_at,
)

_STAGE = re.compile(r"CREATE OR REPLACE TEMP TABLE (\w+)", re.IGNORECASE)
_TABLE_REF = re.compile(r"\breporting\.(\w+)\b(?!\s*\()")  # a table, not a macro call
# Small helpers the SQL files share, kept in the warehouse so any reader can use them too.
MACROS = (
    # The UTC calendar day of a timestamp, whatever the session's time zone.
    "CREATE OR REPLACE MACRO reporting.utc_day(ts) AS CAST(timezone('UTC', ts) AS DATE)",
    # The calendar day of a timestamp in a time zone (IANA name): the client's days.
    "CREATE OR REPLACE MACRO reporting.client_day(tz, ts) AS CAST(timezone(tz, ts) AS DATE)",
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
        *(statement for table in REPORTING_TABLES for statement in table.added_columns()),
        # What each client's last build read (due_after): when its inputs were last written.
        "CREATE TABLE IF NOT EXISTS meta.reporting_inputs "
        "(client_id VARCHAR, input VARCHAR, synced_at TIMESTAMPTZ)",
    ]


def ensure_reporting_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """The stripe.* tables (read) and the reporting.* tables (written), created if missing.

    Skipped when the warehouse records this very schema: replacing the macros is a catalog
    change, and on DuckLake one on every build made each build a new schema version that
    conflicted with every other build committing at the same time.
    """
    statements = [*schema_statements(), *reporting_schema_statements()]
    docs = [table.doc for table in REPORTING_TABLES]
    comments = [s for doc in docs for s in comment_statements(doc)]  # new text: applied again

    def apply() -> None:
        for statement in statements:
            conn.execute(statement)
        apply_comments(conn, docs)

    apply_unless_recorded(conn, "reporting", digest_of([*statements, *comments]), apply)


def _statements(sql: str) -> tuple[list[str], str]:
    """A table's SQL file: staging statements (`CREATE OR REPLACE TEMP TABLE x AS ...;`),
    then the SELECT of its rows."""
    *stages, select = [part.strip() for part in sql.split(";\n") if part.strip()]
    return stages, select.rstrip(";")


def _new_rows(table: ReportingTable) -> str:
    return f"temp.main.new_{table.name}"


def _reading_new_rows(sql: str, built: dict[str, ReportingTable]) -> str:
    """The SQL with every table built earlier in this build read from its new rows."""
    return _TABLE_REF.sub(
        lambda m: _new_rows(built[m.group(1)]) if m.group(1) in built else m.group(0), sql)


def _compute(conn: duckdb.DuckDBPyConnection, table: ReportingTable, values: dict,
             built: dict[str, ReportingTable]) -> None:
    """The client's rows of `table` after this build, into a temp table (nothing written)."""
    stages, select = _statements(_reading_new_rows(table.select_sql(), built))
    for stage in stages:
        conn.execute(stage, bound(stage, values))
    if table.mode == "snapshot":  # earlier days are kept as they are
        select = (f"SELECT * FROM {table.qualified} WHERE client_id = $client_id "
                  f"AND day <> $today UNION ALL BY NAME ({select})")
    create = f"CREATE OR REPLACE TEMP TABLE new_{table.name} AS {select}"
    conn.execute(create, bound(create, values))
    for name in _STAGE.findall("\n".join(stages)):
        conn.execute(f"DROP TABLE IF EXISTS temp.main.{name}")


def _replace(conn: duckdb.DuckDBPyConnection, table: ReportingTable, values: dict) -> int:
    """The client's rows of `table` replaced by the computed ones; returns their count."""
    if table.mode == "snapshot":
        kept = "client_id = $client_id AND day = $today"
        new = f"SELECT * FROM {_new_rows(table)} WHERE day = $today"
    else:
        kept, new = "client_id = $client_id", f"SELECT * FROM {_new_rows(table)}"
    delete = f"DELETE FROM {table.qualified} WHERE {kept}"
    conn.execute(delete, bound(delete, values))
    insert = f"INSERT INTO {table.qualified} BY NAME {new} ORDER BY {table.order_by}"
    conn.execute(insert, bound(insert, values))
    counted = conn.execute(f"SELECT count(*) FROM {_new_rows(table)}").fetchone()
    return int(counted[0]) if counted else 0


def build_reporting_tables(
    conn: duckdb.DuckDBPyConnection,
    client_id: str,
    *,
    now: datetime | None = None,
    tables: tuple[ReportingTable, ...] = REPORTING_TABLES,
    state: str | None = None,
    record_inputs: bool | None = None,
) -> BuildResult:
    """Replace one client's rows in every reporting table, in a single transaction.

    The rows are computed first, into temp tables; the transaction that writes them only
    deletes and inserts. Readers see the old build or the new one, and on DuckLake a
    transaction that lost a commit race re-runs just those writes, not the whole build.
    `conn` is a read-write connection (Warehouse.writer()) outside a transaction. `now`
    fixes the build time (the last day of the daily tables); tests pass it. `state` is the
    client's connection state, for reporting.clients. `record_inputs` (default: when every
    table is built) records what the build read, for tables_due; a build of the tables
    tables_due chose records it too.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    config = client_config(client_id)
    timezone = config.timezone  # the client's calendar days
    values: dict[str, object] = {"client_id": client_id, "now": now, "timezone": timezone,
                                 "today": now.astimezone(ZoneInfo(timezone)).date(),
                                 "name": config.name or client_id, "state": state}
    # Out of memory, each transaction runs again with a larger target (never a failure).
    in_transaction(conn, lambda: ensure_reporting_schema(conn))
    # Read before the tables: a row written meanwhile makes the next check build again.
    marks = _input_watermarks(conn, client_id)
    try:
        in_transaction(conn, lambda: _compute_all(conn, tables, values))

        def replace_all() -> dict[str, int]:
            rows = {table.name: _replace(conn, table, values) for table in tables}
            if record_inputs or (record_inputs is None and tables == REPORTING_TABLES):
                _record_watermarks(conn, client_id, marks)
            return rows

        rows = in_transaction(conn, replace_all)
    finally:
        with suppress(duckdb.Error):  # a broken connection takes its temp tables with it
            for table in tables:
                conn.execute(f"DROP TABLE IF EXISTS {_new_rows(table)}")
    return BuildResult(client_id=client_id, built_at=now, rows=rows)


def _compute_all(conn: duckdb.DuckDBPyConnection, tables: tuple[ReportingTable, ...],
                 values: dict[str, object]) -> None:
    built: dict[str, ReportingTable] = {}
    for table in tables:
        _compute(conn, table, values, built)
        built[table.name] = table



INPUTS_TABLE = "meta.reporting_inputs"
# Every stripe.* table some reporting table reads.
INPUTS = tuple(sorted({name for table in REPORTING_TABLES for name in table.reads}))


def _input_watermarks(conn: duckdb.DuckDBPyConnection, client_id: str
                      ) -> dict[str, datetime | None]:
    """When each input was last written for the client (None: never since it was recorded):
    every write records it in its own transaction (engine.warehouse.note_written)."""
    return _as_inputs(written_at(conn, client_id))


def _as_inputs(written: dict[str, datetime]) -> dict[str, datetime | None]:
    """Each input's latest write (None: none recorded), from every stripe.* table's."""
    return {name: written.get(name) for name in INPUTS}


def _record_watermarks(conn: duckdb.DuckDBPyConnection, client_id: str,
                       marks: dict[str, datetime | None]) -> None:
    conn.execute(f"DELETE FROM {INPUTS_TABLE} WHERE client_id = ?", [client_id])
    conn.executemany(f"INSERT INTO {INPUTS_TABLE} VALUES (?, ?, ?)",
                     [[client_id, name, at] for name, at in marks.items()])


def tables_fed_by(inputs: set[str]) -> tuple[ReportingTable, ...]:
    """The reporting tables to build when `inputs` (stripe.* tables) changed: those reading
    them, those reading a table rebuilt (in build order), and freshness and clients, which
    say when and how the client was built."""
    chosen = {table.name for table in REPORTING_TABLES if set(table.reads) & inputs}
    chosen |= {FRESHNESS.name, "clients"}
    for table in REPORTING_TABLES:  # build order: a table comes after those it reads
        if set(_TABLE_REF.findall(table.select_sql())) & (chosen - {table.name}):
            chosen.add(table.name)
    return tuple(table for table in REPORTING_TABLES if table.name in chosen)


@dataclass(frozen=True)
class LastBuild:
    """What the client's last build recorded, and what was written or failed since: all a
    judgement of whether to build again reads, in one query (on DuckLake each statement
    costs catalog round trips: ten of them were most of a quiet client's check)."""

    built_at: datetime | None
    state: str | None
    read: dict[str, datetime | None]  # each input's latest write when the build read it
    written: dict[str, datetime]  # each stripe.* table's latest write now
    failed: tuple[datetime, str] | None  # the client's recorded failure (meta.sync_failures)
    started: tuple[datetime, str] | None  # its latest sync start, and that sync's process


_LAST_BUILD_SQL = f"""
SELECT f.built_at, c.state,
  (SELECT list({{'name': input, 'at': synced_at}}) FROM {INPUTS_TABLE}
   WHERE client_id = $client_id),
  (SELECT list({{'name': stripe_table, 'at': written_at}}) FROM {WRITES_TABLE}
   WHERE client_id = $client_id),
  (SELECT list({{'at': failed_at, 'by': message}}) FROM {FAILURES_TABLE}
   WHERE client_id = $client_id),
  (SELECT list({{'at': started_at, 'by': owner}}) FROM {STARTS_TABLE}
   WHERE client_id = $client_id)
FROM {FRESHNESS.qualified} f JOIN reporting.clients c USING (client_id)
WHERE client_id = $client_id
"""


def read_last_build(conn: duckdb.DuckDBPyConnection, client_id: str) -> LastBuild | None:
    """The client's last build and what happened since (None: never built, or no reporting
    tables in the warehouse yet)."""
    try:
        row = conn.execute(_LAST_BUILD_SQL, {"client_id": client_id}).fetchone()
    except duckdb.CatalogException:  # a warehouse no build has reached yet
        return None
    if row is None:
        return None
    built_at, state, read, written, failed, started = row
    return LastBuild(built_at, state, _by_name(read), _by_name(written),
                     _latest(failed), _latest(started))


def _by_name(entries: list[dict] | None) -> dict:
    return {entry["name"]: entry["at"] for entry in entries or ()}


def _latest(entries: list[dict] | None) -> tuple[datetime, str] | None:
    latest = max(entries or (), key=lambda entry: entry["at"], default=None)
    return None if latest is None else (latest["at"], latest["by"])


def tables_due(conn: duckdb.DuckDBPyConnection, client_id: str, *, state: str | None = None,
               now: datetime | None = None) -> tuple[ReportingTable, ...]:
    """The client's reporting tables to build now (due_after its last build)."""
    return due_after(read_last_build(conn, client_id), client_id, state=state, now=now)


def due_after(last: LastBuild | None, client_id: str, *, state: str | None = None,
              now: datetime | None = None) -> tuple[ReportingTable, ...]:
    """The client's reporting tables to build now: all of them when never built or when the
    client's calendar day has turned since (daily figures move on); those fed by inputs
    written since the last build (by this run, or by one that failed after landing some)
    or by a changed connection state; none when nothing changed."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if last is None or last.built_at is None:
        return REPORTING_TABLES
    timezone = ZoneInfo(client_config(client_id).timezone)
    if last.built_at.astimezone(timezone).date() != now.astimezone(timezone).date():
        return REPORTING_TABLES
    current = _as_inputs(last.written)
    changed = {name for name, at in current.items()
               if name not in last.read or last.read[name] != at}
    if changed or last.state != state:
        return tables_fed_by(changed)
    return ()


def mark_checked(conn: duckdb.DuckDBPyConnection, checked: dict[str, datetime]) -> None:
    """Clients whose sync found nothing new and whose day has not turned: the figures built
    are those a build now would give, so they count as built (freshness, last sync) when
    each was checked, unrebuilt. Two statements for any number of clients: on DuckLake each
    statement costs catalog round trips."""
    if not checked:
        return
    clients = "(SELECT unnest($clients) AS client_id, unnest($checked_at) AS at) s"
    values = {"clients": list(checked), "checked_at": list(checked.values())}

    def work() -> None:
        conn.execute(f"UPDATE {FRESHNESS.qualified} t SET built_at = s.at FROM {clients} "
                     "WHERE t.client_id = s.client_id", values)
        conn.execute(f"UPDATE reporting.clients t SET last_sync_at = s.at FROM {clients} "
                     "WHERE t.client_id = s.client_id", values)
    in_transaction(conn, work)
