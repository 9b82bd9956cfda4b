"""The agency's view of one client: the report with the operator's notes (reconnect steps,
stale reasons, CLI fixes), and the JSON API. Staff only; the client reads client_report.py.

Every figure comes from reports.widgets.run_widgets (the same JSON as the CLI).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apps.web.client_list import client_rows
from apps.web.common import AppState, app_state, display_name, known_client, page, when
from apps.web.console import console_context
from engine.client_config import client_config
from reports.widgets import (
    COMPARISONS,
    RECONNECT,
    UnknownWidget,
    WidgetResult,
    change_ratio,
    client_currencies,
    format_change,
    format_money,
    format_value,
    get_widget,
    run_widgets,
    widget_catalog,
)

TILES = (
    "gross_volume", "net_volume", "mrr", "arr", "active_subscriptions", "new_customers",
    "successful_payments", "failed_payments", "refunds", "new_subscriptions",
    "churned_subscriptions", "churn_rate", "arpu", "available_balance", "pending_balance",
    "delinquent_churn", "mrr_recovered",
)
CHARTS = ("revenue_over_time", "mrr_over_time", "mrr_movements", "payouts")
TABLES = ("recent_payments",)
# Issue 22's widgets, below the key figures in titled sections: (id, title, widgets).
ANALYTICS_TILES = (
    ("subscription-analytics", "Subscription analytics", (
        "customer_churn", "customer_churn_rate", "subscription_churn_rate", "mrr_churn_rate",
        "nrr", "grr", "nrr_12m", "grr_12m", "arpa", "ltv", "quick_ratio", "new_trials",
        "trial_conversion_rate")),
    ("disputes", "Disputes", ("disputes",)),
)
BREAKDOWNS = ("mrr_by_plan", "revenue_by_country")
COHORTS = "cohort_retention"
ANALYTICS = (*(n for _, _, names in ANALYTICS_TILES for n in names), *BREAKDOWNS, COHORTS)
REPORT_WIDGETS = (*TILES, *CHARTS, *TABLES, *ANALYTICS)


# -- presentation helpers ---------------------------------------------------------------


def _day(value: date) -> str:
    return f"{value.day} {value:%b %Y}"


def _period_label(start: date, end: date) -> str:
    if start.year == end.year:
        first = f"{start.day} {start:%b}" if start.month != end.month else str(start.day)
        return f"{first} – {_day(end)}"
    return f"{_day(start)} – {_day(end)}"


def _presets(today: date) -> list[tuple[str, date, date]]:
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    return [
        ("Last 7 days", today - timedelta(days=6), today),
        ("Last 30 days", today - timedelta(days=29), today),
        ("Last 90 days", today - timedelta(days=89), today),
        ("This month", first_of_month, today),
        ("Last month", last_month_end.replace(day=1), last_month_end),
        ("Year to date", today.replace(month=1, day=1), today),
    ]


def _tile(result: WidgetResult) -> dict[str, Any]:
    widget = get_widget(result.widget)
    ratio = change_ratio(result.value, result.previous)
    good = None if ratio is None or ratio == 0 else (ratio > 0) == widget.higher_is_better
    return {
        "result": result,
        "text": format_value(result.value, result.unit, result.currency),
        "previous_text": format_value(result.previous, result.unit, result.currency),
        "change": format_change(result.value, result.previous, result.unit),
        "trend": "flat" if good is None else ("good" if good else "bad"),
        "direction": "" if not ratio else ("▲" if ratio > 0 else "▼"),
        "description": widget.description,
        "definition": widget.definition,
    }


def _chart(result: WidgetResult) -> dict[str, Any]:
    widget = get_widget(result.widget)
    return {
        "name": result.widget, "kind": result.kind, "title": result.title,
        "currency": result.currency, "series": list(widget.series),
        "labels": [row["day"] for row in result.rows],
        "data": {s: [row[s] for row in result.rows] for s in widget.series},
    }


def _payment_rows(result: WidgetResult, zone: ZoneInfo) -> list[dict[str, Any]]:
    rows = []
    for row in result.rows:
        created = datetime.fromisoformat(row["created"]).astimezone(zone)  # the client's clock
        rows.append({
            **row,
            "when": f"{created:%d %b %Y %H:%M}",
            "amount_text": format_money(row["amount"], row["currency"]),
        })
    return rows


# The columns shown (the CSV has them all): the plan's name says more than its product id.
_COLUMN_TITLES = {"plan": "Plan", "mrr": "MRR",
                  "subscriptions": "Subscriptions", "country": "Country", "gross": "Gross volume",
                  "payments": "Payments"}


def _breakdown(result: WidgetResult) -> dict[str, Any]:
    """A table widget's rows as cells, money formatted in the widget's currency."""
    columns = [c for c in (result.rows[0] if result.rows else {}) if c in _COLUMN_TITLES]
    money = {"mrr", "gross"}
    return {
        "result": result,
        "description": get_widget(result.widget).description,
        "definition": get_widget(result.widget).definition,
        "columns": [(c, _COLUMN_TITLES[c], c in money) for c in columns],
        "rows": [[format_money(row[c], result.currency) if c in money and row[c] is not None
                  else ("—" if row[c] is None else row[c]) for c in columns]
                 for row in result.rows],
    }


def _percent(value: float | None) -> str:
    return "—" if value is None else format_value(value, "percent", None)


def _cohort_grid(result: WidgetResult) -> dict[str, Any]:
    """cohort_retention's rows (cohort, month, customers, customers_pct, mrr, mrr_pct) as
    one line per cohort and one column per month since it first paid."""
    cohorts: dict[str, dict[int, dict[str, Any]]] = {}
    for row in result.rows:
        cohorts.setdefault(row["cohort"], {})[int(row["month"])] = row
    months = max((m for cells in cohorts.values() for m in cells), default=-1) + 1
    lines = []
    for cohort, cells in cohorts.items():
        first = cells.get(0, {})
        lines.append({
            "cohort": cohort, "customers": first.get("customers"),
            "cells": [None if m not in cells else {
                "pct": _percent(cells[m]["customers_pct"]), "customers": cells[m]["customers"],
                "mrr_pct": _percent(cells[m]["mrr_pct"]),
                "mrr": format_money(cells[m]["mrr"], result.currency)}
                for m in range(months)],
        })
    return {"result": result, "definition": get_widget(result.widget).definition,
            "months": list(range(months)), "lines": lines}


# -- reading ----------------------------------------------------------------------------


def compare_label(result: WidgetResult) -> str:
    """What the figures are compared with, in words, with its days."""
    words = COMPARISONS[result.compare]
    if result.previous_start is None or result.previous_end is None:
        return words
    return f"{words} ({_period_label(result.previous_start, result.previous_end)})"


def _report_context(state: AppState, client_id: str, start: str | None, end: str | None,
                    currency: str | None, compare: str | None = None) -> dict[str, Any]:
    connection = state.store.get(client_id)
    timezone = client_config(client_id).timezone
    results = run_widgets(client_id, list(REPORT_WIDGETS), start, end, currency,
                          warehouse=state.warehouse, store=state.store, compare=compare)
    by_name = {r.widget: r for r in results}
    first = results[0]
    with state.warehouse.client_reader(client_id) as conn:  # the lake serves a copy
        currencies = client_currencies(conn, client_id)
    reconnect = next((r for r in results if r.state == RECONNECT), None)
    stale = next((r for r in results if r.state == "stale"), None)
    shown_currency = next((r.currency for r in results if r.currency), None)
    return {
        "client_id": client_id,
        "name": display_name(client_id, connection),
        "connection": connection,
        "start": first.start, "end": first.end,
        "period_label": _period_label(first.start, first.end),
        "timezone": timezone,  # whose calendar days the period's are
        "compare": first.compare,
        "compare_label": compare_label(first),
        "comparisons": list(COMPARISONS.items()),
        "currency": shown_currency,
        "currencies": currencies,
        "presets": _presets(datetime.now(ZoneInfo(timezone)).date()),
        "tiles": [_tile(by_name[name]) for name in TILES],
        "charts": [by_name[name] for name in CHARTS],
        "chart_data": [_chart(by_name[name]) for name in CHARTS if by_name[name].rows],
        "payments": by_name["recent_payments"],
        "payment_rows": _payment_rows(by_name["recent_payments"], ZoneInfo(timezone)),
        "analytics": [(section_id, title, [_tile(by_name[n]) for n in names])
                      for section_id, title, names in ANALYTICS_TILES],
        "breakdowns": [_breakdown(by_name[n]) for n in BREAKDOWNS],
        "cohorts": _cohort_grid(by_name[COHORTS]),
        "reconnect": reconnect,
        "stale": stale,
        "as_of": when(first.as_of),
        "generated": when(datetime.now(UTC)),
    }


async def report(request: Request) -> Response:
    try:
        client_id = await known_client(request)
        q = request.query_params
        context = await run_in_threadpool(
            _report_context, app_state(request), client_id, q.get("start"), q.get("end"),
            q.get("currency"), q.get("compare"))
    except ValueError as error:
        return page(request, "error.html", {**console_context(request),
                                            "message": str(error)}, status=400)
    context["sync_started"] = request.query_params.get("sync_started")
    return page(request, "report.html", {**console_context(request), **context})


def _status(state: AppState, client_id: str) -> dict[str, Any]:
    connection = state.store.get(client_id)
    result = run_widgets(client_id, ["gross_volume", "mrr"], warehouse=state.warehouse,
                         store=state.store)
    return {
        "client": client_id,
        "connection": connection.state.value if connection else None,
        "last_sync_at": connection.last_sync_at.isoformat()
        if connection and connection.last_sync_at else None,
        "has_figures": any(r.state in ("ok", "stale") for r in result),
        "state": result[0].state,
    }


async def api_status(request: Request) -> Response:
    client_id = await known_client(request)
    return JSONResponse(await run_in_threadpool(_status, app_state(request), client_id))


async def api_catalog(request: Request) -> Response:
    return JSONResponse([w.describe() for w in widget_catalog()])


def _clients_json(state: AppState) -> list[dict[str, Any]]:
    connections = {c.client_id: c for c in state.store.list()}
    answer = []
    for row in client_rows(state):
        connection = connections.get(row.client_id)
        stored = {k: v for k, v in connection.to_dict().items()
                  if k in ("state", "account_id", "masked_key", "last_sync_at",
                           "last_check_at")} if connection else {"state": None}
        answer.append({"client": row.client_id, "name": row.name, **stored,
                       "status": row.state, "needs_attention": row.kind == "attention"})
    return answer


async def api_clients(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_clients_json, app_state(request)))


async def api_widgets(request: Request) -> Response:
    state = app_state(request)
    q = request.query_params
    try:
        client_id = await known_client(request)
        name = request.path_params.get("widget")
        chosen = [get_widget(name)] if name else None
        results = await run_in_threadpool(
            lambda: run_widgets(client_id, chosen, q.get("start"), q.get("end"),
                                q.get("currency"), warehouse=state.warehouse,
                                store=state.store, compare=q.get("compare")))
    except UnknownWidget as error:
        return JSONResponse({"error": str(error)}, status_code=404)
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    if name:
        return JSONResponse(results[0].to_json())
    return JSONResponse([r.to_json() for r in results])


