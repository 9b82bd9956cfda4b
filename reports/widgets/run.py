"""Running widgets: parameters, state (ok, no_data, stale, reconnect_required) and values.

The CLI, the JSON API and the report page all call run_widget / run_widgets, so the same
client, widget and period give the same JSON everywhere.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import astuple, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from engine.client_config import client_config
from engine.connection_store import ClientConnection, ConnectionState, ConnectionStore
from engine.currencies import currency_exponent
from engine.freshness import last_failure, read_built_at, staleness
from engine.permissions import readable_permissions, unreadable
from engine.reporting.tables import CURRENCIES, FRESHNESS
from engine.sql import bound
from engine.warehouse import Warehouse
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets.catalog import WIDGETS, Widget, get_widget, needed_data

DEFAULT_DAYS = 30

OK, NO_DATA, STALE, RECONNECT = "ok", "no_data", "stale", "reconnect_required"


@dataclass
class WidgetResult:
    client: str
    widget: str
    title: str
    kind: str
    unit: str
    state: str
    start: date
    end: date
    currency: str | None
    value: float | int | None = None
    previous: float | int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None
    steps: list[str] = field(default_factory=list)
    as_of: datetime | None = None
    definition: str | None = None
    # What `previous` is: one of COMPARISONS, over previous_start..previous_end.
    compare: str = "previous_period"
    previous_start: date | None = None
    previous_end: date | None = None

    def to_json(self) -> dict[str, Any]:
        """The contract's shape, plus `previous`, `kind` and `title`."""
        return {
            "client": self.client,
            "widget": self.widget,
            "state": self.state,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "currency": self.currency,
            "value": self.value,
            "rows": self.rows,
            "message": self.message,
            "steps": list(self.steps),
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "previous": self.previous,
            "kind": self.kind,
            "title": self.title,
            "definition": self.definition,
            "compare": self.compare,
            "previous_start": self.previous_start.isoformat() if self.previous_start else None,
            "previous_end": self.previous_end.isoformat() if self.previous_end else None,
        }


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of equal length just before this one."""
        end = self.start - timedelta(days=1)
        return Period(end - timedelta(days=self.days - 1), end)

    def compared(self, compare: str) -> Period:
        """The period a figure is compared with (COMPARISONS): the one just before, or the
        same days a month, quarter or year earlier (month to date: the same days of the
        previous month; a period ending on a month's last day ends on that month's last)."""
        if compare == "previous_period":
            return self.previous()
        months = _MONTHS_BACK[compare]
        month_end = (self.end + timedelta(days=1)).day == 1
        return Period(_months_back(self.start, months), _months_back(self.end, months, month_end))


# What a figure is compared with, as the CLI, the JSON API and the page name it.
COMPARISONS = {
    "previous_period": "previous period",
    "previous_year": "same period last year",
    "previous_quarter": "same days of the previous quarter",
    "previous_month": "same days of the previous month",
}
_MONTHS_BACK = {"previous_year": 12, "previous_quarter": 3, "previous_month": 1}


def _months_back(day: date, months: int, month_end: bool = False) -> date:
    """The same day `months` earlier, on the month's last day when it is shorter."""
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, last if month_end else min(day.day, last))


def resolve_compare(compare: str | None) -> str:
    """The comparison asked for (default: the previous period), or a ValueError saying which
    there are."""
    if compare in (None, ""):
        return "previous_period"
    if compare not in COMPARISONS:
        raise ValueError(f"--compare must be one of {', '.join(COMPARISONS)}, not {compare!r}.")
    return compare


_CURRENCY_CODE = re.compile(r"[A-Za-z]{3}")


def resolve_currency(currency: str | None) -> str | None:
    """A currency asked for, as Stripe writes it (`usd`), or a ValueError: a code is three
    letters (ISO 4217). What was typed is echoed short and printable."""
    if currency in (None, ""):
        return None
    if not _CURRENCY_CODE.fullmatch(currency):
        shown = currency[:12].encode("unicode_escape").decode()
        shown += "…" if len(currency) > 12 else ""
        raise ValueError(f"'{shown}' is not a currency code: give three letters, such as usd "
                         "or eur.")
    return currency.lower()


def _check_currency(conn: duckdb.DuckDBPyConnection, client_id: str,
                    currency: str | None) -> None:
    """A currency the client has never had is a mistake to say, not an empty figure: a
    figure of zero would read as no sales (a client with no data yet says that instead)."""
    known = client_currencies(conn, client_id)
    if currency and known and currency not in known:
        raise ValueError(f"'{client_id}' has no {currency.upper()} payments: its currencies "
                         f"are {', '.join(c.upper() for c in known)}.")


# Dates a widget may ask for: from 2000 (before Stripe) to a year ahead, over at most about
# ten years. A request is bounded work, whoever sends it (the page answers without login).
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAYS_AHEAD = 366
MAX_PERIOD_DAYS = 3660


def _as_date(value: date | str | None, name: str, now: datetime | None = None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        day = value.astimezone(UTC).date()
    elif isinstance(value, date):
        day = value
    else:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"--{name} must be a date like 2024-05-31, not {value!r}.") from None
    latest = (now or datetime.now(UTC)).astimezone(UTC).date() + timedelta(LATEST_DAYS_AHEAD)
    if not EARLIEST_DAY <= day <= latest:
        raise ValueError(f"--{name} must be between {EARLIEST_DAY} and {latest}, not {day}.")
    return day


def resolve_period(start: date | str | None, end: date | str | None, now: datetime,
                   timezone: str = "UTC") -> Period:
    """Defaults: the last 30 days up to today (in `timezone`, the client's). A lone start
    runs to today; a lone end starts 30 days earlier (both days included).

    Dates lie between EARLIEST_DAY and a year from today, the start is not after the end,
    and a period spans at most MAX_PERIOD_DAYS; anything else is a ValueError that says so.
    """
    start_day, end_day = _as_date(start, "start", now), _as_date(end, "end", now)
    today = now.astimezone(ZoneInfo(timezone)).date()
    if start_day is not None and end_day is None and start_day > today:
        raise ValueError(f"--start {start_day} is after today ({today}), where a period "
                         "without --end ends: give an --end too, or an earlier --start.")
    end_day = end_day or today
    start_day = start_day or end_day - timedelta(days=DEFAULT_DAYS - 1)
    if start_day > end_day:
        raise ValueError(f"--start {start_day} is after --end {end_day}: the start is the "
                         "first day of the period, the end its last.")
    if (end_day - start_day).days + 1 > MAX_PERIOD_DAYS:
        raise ValueError(f"The period {start_day} to {end_day} is longer than "
                         f"{MAX_PERIOD_DAYS} days (about ten years): choose a shorter one.")
    return Period(start_day, end_day)


# -- reading the warehouse -----------------------------------------------------------


def _query(conn: duckdb.DuckDBPyConnection, sql: str, values: dict[str, Any]):
    return conn.execute(sql, bound(sql, values))


def reporting_ready(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the reporting tables exist (a first build has run)."""
    found = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'reporting' "
        "AND table_name IN (?, ?)", [CURRENCIES.name, FRESHNESS.name]
    ).fetchone()
    return bool(found and found[0] == 2)


def _main_currency(conn: duckdb.DuckDBPyConnection, client_id: str) -> str | None:
    row = conn.execute(
        f"SELECT currency FROM {CURRENCIES.qualified} WHERE client_id = ? "
        "ORDER BY is_main DESC, currency LIMIT 1", [client_id]
    ).fetchone()
    return row[0] if row else None


def client_currencies(conn: duckdb.DuckDBPyConnection, client_id: str) -> list[str]:
    """The client's currencies, main one first."""
    if not reporting_ready(conn):
        return []
    return [r[0] for r in conn.execute(
        f"SELECT currency FROM {CURRENCIES.qualified} WHERE client_id = ? "
        "ORDER BY is_main DESC, currency", [client_id]).fetchall()]


def _plain(value: Any, unit: str, currency: str | None) -> Any:
    """JSON-ready numbers: money rounded to the currency's decimals, counts as integers."""
    if value is None:
        return None
    if unit == "count":
        return int(value)
    if unit in ("percent", "ratio"):
        return round(float(value), 2)
    digits = currency_exponent(currency) if currency else 2
    rounded = round(float(value), digits)
    return int(rounded) if digits == 0 else rounded


def _cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(round(value, 4))
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [{n: _cell(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


def _has_source_rows(conn, widget: Widget, values: dict[str, Any]) -> bool:
    sql = f"SELECT 1 FROM {widget.source.qualified} WHERE client_id = $client_id" + (
        " AND currency = $currency" if widget.currency_scoped else "") + " LIMIT 1"
    return _query(conn, sql, values).fetchone() is not None


# -- states ----------------------------------------------------------------------------


def _no_data(result: WidgetResult, message: str, steps: list[str] | None = None) -> WidgetResult:
    result.state, result.message, result.steps = NO_DATA, message, steps or []
    result.value = result.previous = None
    result.rows = []
    return result


def _sync_steps(client_id: str) -> list[str]:
    return [f"Run `stripe-reports sync {client_id}` to fetch the client's Stripe data and "
            "build its reporting tables."]


def _stale_steps(client_id: str) -> list[str]:
    return [
        f"Run `stripe-reports sync {client_id}` to update now.",
        "If syncs keep failing, see `stripe-reports clients` and the client's runs in the "
        "Dagster UI.",
    ]


def _reconnect(result: WidgetResult, connection: ClientConnection) -> WidgetResult:
    result.state = RECONNECT
    result.message = connection.reason or (
        "The last credential check of this client's Stripe key failed.")
    result.steps = list(connection.steps) or [
        f"Run `stripe-reports connect {result.client}` and paste a new Stripe Secret key."]
    return result


# -- running -----------------------------------------------------------------------------


def _blank(client_id: str, widget: Widget, period: Period, currency: str | None) -> WidgetResult:
    return WidgetResult(
        client=client_id, widget=widget.name, title=widget.title, kind=widget.kind,
        unit=widget.unit, state=OK, start=period.start, end=period.end,
        currency=currency if widget.currency_scoped else None, definition=widget.definition,
    )


def _evaluate(conn, client_id: str, widget: Widget, period: Period, currency: str | None,
              connection: ClientConnection | None, compare: str) -> WidgetResult:
    result = _blank(client_id, widget, period, currency)
    denied = _unreadable_needs(widget, connection)
    if denied:
        return _cannot_read(result, denied)
    if widget.currency_scoped and currency is None:
        return _no_data(result, f"No payments, subscriptions or balance synced for "
                        f"'{client_id}' yet.", _sync_steps(client_id))
    values = {"client_id": client_id, "currency": currency,
              "start": period.start, "end": period.end}
    if not _has_source_rows(conn, widget, values):
        what = f"{currency.upper()} data" if widget.currency_scoped and currency else "data"
        return _no_data(result, f"No {what} for this widget in '{client_id}' yet.",
                        _sync_steps(client_id))
    before = period.compared(compare)
    result.compare, result.previous_start, result.previous_end = compare, *astuple(before)
    previous_values = {**values, "start": before.start, "end": before.end}
    value = _query(conn, widget.value_sql, values).fetchone()
    previous = _query(conn, widget.value_sql, previous_values).fetchone()
    result.value = _plain(value[0] if value else None, widget.unit, currency)
    result.previous = _plain(previous[0] if previous else None, widget.unit, currency)
    if widget.rows_sql:
        result.rows = _rows(_query(conn, widget.rows_sql, values))
    if result.value is None and not result.rows:
        return _no_data(result, f"No figures for {period.start} to {period.end}.")
    return result


def _unreadable_needs(widget: Widget, connection: ClientConnection | None) -> list[str]:
    """What this widget's figure is computed from that the client's key was connected
    without (the permissions its credential check recorded)."""
    if connection is None or not connection.missing_permissions:
        return []
    denied = set(unreadable(connection.missing_permissions))
    return [name for name in needed_data(widget) if name in denied]


def _cannot_read(result: WidgetResult, denied: list[str]) -> WidgetResult:
    """No figure rather than a wrong one: the message is for the client, the steps for
    whoever manages the key."""
    labels = " and ".join(name.replace("_", " ") for name in denied)
    permissions = readable_permissions()
    grants = ", ".join(f"{name.replace('_', ' ').capitalize()} ({permissions[name]})"
                       for name in denied)
    return _no_data(result, f"{result.title} cannot be shown: it is computed from the "
                    f"account's {labels}, which the Stripe key connected for these reports "
                    "is not allowed to read.", [
                        "In the Stripe Dashboard open Developers → API keys and edit the "
                        f"restricted key: grant Read on {grants}, or use the Secret key.",
                        f"Then run `stripe-reports connect {result.client}` with that key "
                        f"and `stripe-reports sync {result.client}`."])


def _connection(client_id: str, store: ConnectionStore | None) -> ClientConnection | None:
    if store is not None:
        return store.get(client_id)
    with ConnectionStore.from_settings() as own:
        return own.get(client_id)


def run_widgets(
    client_id: str,
    widgets: list[str | Widget] | None = None,
    start: date | str | None = None,
    end: date | str | None = None,
    currency: str | None = None,
    *,
    warehouse: Warehouse | None = None,
    store: ConnectionStore | None = None,
    now: datetime | None = None,
    compare: str | None = None,
) -> list[WidgetResult]:
    """Several widgets of one client over one period, from one read of the warehouse;
    `previous` is each figure over the period `compare` names (COMPARISONS)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    chosen = [get_widget(w) for w in (widgets or WIDGETS)]
    period = resolve_period(start, end, now, client_config(client_id).timezone)
    compare = resolve_compare(compare)
    currency = resolve_currency(currency)
    connection = _connection(client_id, store)

    if connection is not None and connection.state is ConnectionState.FAILED:
        results = [_reconnect(_blank(client_id, w, period, currency), connection)
                   for w in chosen]
        for result in results:
            result.as_of = connection.last_sync_at
        return results

    warehouse = warehouse or warehouse_from_settings()
    with warehouse.client_reader(client_id) as conn:
        if not reporting_ready(conn):
            return [
                _no_data(_blank(client_id, w, period, currency),
                         f"The reporting tables have not been built for '{client_id}' yet.",
                         _sync_steps(client_id))
                for w in chosen
            ]
        _check_currency(conn, client_id, currency)
        currency = currency or _main_currency(conn, client_id)
        built_at = read_built_at(conn, client_id)
        failure = last_failure(conn, client_id)
        results = [_evaluate(conn, client_id, w, period, currency, connection, compare)
                   for w in chosen]

    stale = built_at and staleness(client_id, built_at, failure, now)
    for result in results:
        result.as_of = built_at
        if stale and result.state == OK:
            result.state, result.message, result.steps = STALE, stale, _stale_steps(client_id)
    return results


def run_widget(client_id: str, widget: str | Widget, *args: Any, **kwargs: Any) -> WidgetResult:
    """One widget's data for a client and period (default: the last 30 days); the other
    arguments are run_widgets'."""
    return run_widgets(client_id, [widget], *args, **kwargs)[0]
