"""The client report: what an agency's client reads (by share link, as a PDF, by email).

The agency's brand, the client's name, the period and the figures, in the client's locale
(Babel). Nothing operator-facing: no keys, account ids, setting names, CLI commands or
links into the console. A widget's own message is written for the agency, so it is never
shown here; the report says in plain words when figures are missing or old.
`render_client_report` is the one way to render it (the share route and the PDF use it).
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_interval
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import Environment

from engine.client_config import client_config
from engine.connection_store import ConnectionStore
from engine.settings import Settings
from engine.warehouse import Warehouse
from reports.widgets import COMPARISONS, RECONNECT, WidgetResult, get_widget, run_widgets

DEFAULT_LOCALE = "en_US"
DEFAULT_BRAND = "Stripe reports"
DEFAULT_COLOR = "#635bff"
# Net and gross revenue retention are the subscription analytics a client reads most
# readily; the rest (and every definition) stay on the staff page.
TILES = ("gross_volume", "net_volume", "mrr", "arr", "active_subscriptions", "new_customers",
         "successful_payments", "refunds", "churn_rate", "arpu", "nrr", "grr")
CHARTS = ("revenue_over_time", "mrr_over_time")
REPORT_WIDGETS = (*TILES, *CHARTS, "recent_payments")
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
_LOGO_TYPES = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"}
MAX_LOGO_BYTES = 512 * 1024
STATUS_WORDS = {"succeeded": "Paid", "failed": "Failed", "pending": "Pending",
                "refunded": "Refunded"}


class ClientPeriodError(ValueError):
    """A period the report cannot show; the message is for the client, in plain words."""


def brand(settings: Settings) -> dict[str, str | None]:
    """The agency's name, colour and logo (a data: URL, so a PDF or email needs no server)."""
    color = settings.brand_color if settings.brand_color and \
        _COLOR.fullmatch(settings.brand_color) else DEFAULT_COLOR
    logo = None
    path = settings.brand_logo
    if path is not None and path.suffix.lower() in _LOGO_TYPES and path.is_file() \
            and path.stat().st_size <= MAX_LOGO_BYTES:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        logo = f"data:{_LOGO_TYPES[path.suffix.lower()]};base64,{data}"
    return {"name": settings.brand_name or DEFAULT_BRAND, "color": color, "logo": logo}


def client_locale(client_id: str) -> Locale:
    return Locale.parse(client_config(client_id).locale or DEFAULT_LOCALE)


def money(value: float | None, currency: str | None, locale: Locale) -> str:
    if value is None:
        return "—"
    if not currency:
        return format_decimal(value, locale=locale)
    return format_currency(value, currency.upper(), locale=locale)


def figure(value: Any, unit: str, currency: str | None, locale: Locale) -> str:
    if value is None:
        return "—"
    if unit == "money":
        return money(value, currency, locale)
    if unit == "percent":
        return format_percent(value / 100, "#,##0.0%", locale=locale)
    return format_decimal(int(value), locale=locale)


def change(value: Any, previous: Any, unit: str, locale: Locale) -> tuple[str, float]:
    """The change against the previous period: a rate's in percentage points (+1.6 pp),
    anything else as a relative change (+12.5 %). The float is the signed change."""
    if value is None or previous is None:
        return "", 0.0
    if unit == "percent":
        points = value - previous
        return f"{format_decimal(points, '+#,##0.0;-#,##0.0', locale=locale)} pp", points
    if previous == 0:
        return ("new" if value else ""), float(value or 0)
    ratio = (value - previous) / abs(previous)
    return format_percent(ratio, "+#,##0.0%;-#,##0.0%", locale=locale), ratio


def _tile(result: WidgetResult, locale: Locale) -> dict[str, Any]:
    widget = get_widget(result.widget)
    text, delta = change(result.value, result.previous, result.unit, locale)
    good = None if not delta else (delta > 0) == widget.higher_is_better
    return {
        "result": result, "title": result.title,
        "shown": result.state in ("ok", "stale"),
        "text": figure(result.value, result.unit, result.currency, locale),
        "previous_text": figure(result.previous, result.unit, result.currency, locale),
        "change": text,
        "trend": "flat" if good is None else ("good" if good else "bad"),
        "direction": "" if not delta else ("▲" if delta > 0 else "▼"),
    }


def _chart(result: WidgetResult, locale: Locale) -> dict[str, Any]:
    widget = get_widget(result.widget)
    return {
        "name": result.widget, "kind": result.kind, "title": result.title,
        "currency": result.currency, "series": list(widget.series),
        "locale": str(locale).replace("_", "-"),
        "labels": [row["day"] for row in result.rows],
        "data": {s: [row[s] for row in result.rows] for s in widget.series},
    }


def _payments(result: WidgetResult, locale: Locale, zone: ZoneInfo) -> list[dict[str, Any]]:
    rows = []
    for row in result.rows:
        created = datetime.fromisoformat(row["created"])
        customer = row.get("customer") or ""
        rows.append({
            # The client's clock, as the period's days are the client's.
            "when": format_datetime(created, "medium", tzinfo=zone, locale=locale),
            # A Stripe id means nobody named the customer: it says nothing to the client.
            "customer": "" if customer.startswith("cus_") else customer,
            "description": row.get("description") or "",
            "status": row.get("status") or "",
            "status_text": STATUS_WORDS.get(row.get("status") or "", row.get("status") or ""),
            "amount": money(row["amount"], row["currency"], locale),
        })
    return rows


def _presets(today: date) -> list[tuple[str, date, date]]:
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    return [
        ("Last 30 days", today - timedelta(days=29), today),
        ("This month", first_of_month, today),
        ("Last month", last_month_end.replace(day=1), last_month_end),
        ("Year to date", today.replace(month=1, day=1), today),
    ]


def _notice(results: list[WidgetResult], locale: Locale) -> str | None:
    """What the client is told when figures are missing or old (never the agency's text)."""
    if any(r.state == RECONNECT for r in results):
        return ("These figures are being refreshed. Your agency has been told and will "
                "send the report again when the new figures are in.")
    as_of = results[0].as_of
    if any(r.state == "stale" for r in results) and as_of:
        return f"These figures were last updated on {format_date(as_of, 'long', locale=locale)}."
    return None


def _compared_with(result: WidgetResult, locale: Locale) -> str:
    """"Compared with the same period last year (Nov 1 – 30, 2025)", in the client's locale."""
    words = f"Compared with the {COMPARISONS[result.compare]}"
    if result.previous_start is None or result.previous_end is None:
        return words
    days = format_interval(result.previous_start, result.previous_end, "yMMMd", locale=locale)
    return f"{words} ({days})"


def client_report_context(client_id: str, start: date | str | None, end: date | str | None,
                          *, settings: Settings, warehouse: Warehouse, store: ConnectionStore,
                          name: str, compare: str | None = None) -> dict[str, Any]:
    """Everything the client report template shows for one client, period and comparison
    (COMPARISONS; the share link's `compare` parameter)."""
    locale = client_locale(client_id)
    timezone = client_config(client_id).timezone
    zone = ZoneInfo(timezone)
    if compare and compare not in COMPARISONS:
        raise ClientPeriodError("That comparison cannot be shown. Choose one from the list "
                                "above.")
    try:
        results = run_widgets(client_id, list(REPORT_WIDGETS), start, end,
                              warehouse=warehouse, store=store, compare=compare)
    except ValueError:
        raise ClientPeriodError("That period cannot be shown. Choose one of the periods "
                                "above, with the first day before the last.") from None
    by_name = {r.widget: r for r in results}
    first = results[0]
    hidden = any(r.state == RECONNECT for r in results)
    now = datetime.now(UTC)
    return {
        "brand": brand(settings), "name": name, "client_id": client_id,
        "lang": locale.language, "start": first.start, "end": first.end,
        "period_label": format_interval(first.start, first.end, "yMMMd", locale=locale),
        "timezone": timezone,  # whose calendar days and clock the report's are
        "compare": first.compare,
        "compared_with": _compared_with(first, locale),
        "comparisons": list(COMPARISONS.items()),
        "currency": next((r.currency for r in results if r.currency), None),
        "presets": _presets(now.astimezone(zone).date()),
        "tiles": [_tile(by_name[n], locale) for n in TILES],
        "charts": [by_name[n] for n in CHARTS],
        "chart_data": [] if hidden else [_chart(by_name[n], locale) for n in CHARTS
                                         if by_name[n].rows],
        "payments": [] if hidden else _payments(by_name["recent_payments"], locale, zone),
        "notice": _notice(results, locale),
        "as_of": format_datetime(first.as_of, "medium", tzinfo=zone, locale=locale)
        if first.as_of else None,
        "generated": format_date(now, "long", locale=locale),
    }


def render_client_report(env: Environment, context: dict[str, Any], *,
                         base_path: str = "") -> str:
    """The client report's HTML; `base_path` prefixes its period links (the share path)."""
    return env.get_template("client_report.html").render(**context, base_path=base_path)
