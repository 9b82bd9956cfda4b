"""Widget values as people read them: money with its currency, tables and CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from engine.currencies import currency_exponent
from reports.widgets.catalog import WIDGETS
from reports.widgets.run import COMPARISONS, WidgetResult

CURRENCY_SYMBOLS = {
    "usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cny": "CN¥", "inr": "₹", "krw": "₩",
    "cad": "CA$", "aud": "A$", "nzd": "NZ$", "brl": "R$", "mxn": "MX$", "chf": "CHF ",
}
EMPTY = "—"


def format_money(value: float | int | None, currency: str | None) -> str:
    if value is None:
        return EMPTY
    digits = currency_exponent(currency)
    number = f"{abs(value):,.{digits}f}"
    sign = "-" if value < 0 else ""
    code = (currency or "").lower()
    if code in CURRENCY_SYMBOLS:
        return f"{sign}{CURRENCY_SYMBOLS[code]}{number}"
    return f"{sign}{number} {code.upper()}".rstrip()


def format_value(value: Any, unit: str, currency: str | None = None) -> str:
    if value is None:
        return EMPTY
    if unit == "money":
        return format_money(value, currency)
    if unit == "percent":
        return f"{value:,.1f}%"
    if unit == "ratio":
        return f"{value:,.2f}"
    return f"{int(value):,}"


def change_ratio(value: Any, previous: Any) -> float | None:
    """Relative change against the previous period; None when there is nothing to compare."""
    if value is None or previous in (None, 0):
        return None
    return (value - previous) / abs(previous)


def format_change(value: Any, previous: Any, unit: str | None = None) -> str:
    """Relative change in %, or for a rate its change in percentage points."""
    if unit == "percent":
        both = value is not None and previous is not None
        return f"{value - previous:+.1f} pp" if both else EMPTY
    ratio = change_ratio(value, previous)
    if ratio is None:
        return "new" if previous == 0 and value else EMPTY
    return f"{ratio * 100:+.1f}%"


def _cell_text(value: Any, currency: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):  # money: counts come back as integers
        return f"{value:,.{currency_exponent(currency)}f}"
    return str(value)


def render_table(result: WidgetResult) -> str:
    """A plain-text block for a terminal: the figure, its comparison, then any rows."""
    lines = [
        f"{result.title} ({result.widget}) · {result.client} · {result.start} to {result.end}"
        + (f" · {result.currency.upper()}" if result.currency else ""),
        f"state: {result.state}",
    ]
    if result.state in ("ok", "stale"):
        lines.append(
            f"value: {format_value(result.value, result.unit, result.currency)}   "
            f"{COMPARISONS[result.compare]}: "
            f"{format_value(result.previous, result.unit, result.currency)} "
            f"({format_change(result.value, result.previous, result.unit)})"
        )
    if result.message:
        lines.append(result.message)
    lines += [f"  {n}. {step}" for n, step in enumerate(result.steps, 1)]
    if result.rows:
        names = list(result.rows[0])
        cells = [[_cell_text(row[n], row.get("currency") or result.currency) for n in names]
                 for row in result.rows]
        widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
        lines.append("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
        lines += ["  ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                            for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def render_csv(result: WidgetResult) -> str:
    """The rows as CSV; a figure-only widget gives one summary row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if result.rows:
        names = list(result.rows[0])
        writer.writerow(names)
        writer.writerows([[row[n] for n in names] for row in result.rows])
    else:
        writer.writerow(["client", "widget", "state", "start", "end", "currency", "value",
                         "previous", "message", "as_of"])
        data = result.to_json()
        writer.writerow([data["client"], data["widget"], data["state"], data["start"],
                         data["end"], data["currency"] or "", _csv(data["value"]),
                         _csv(data["previous"]), data["message"] or "", data["as_of"] or ""])
    return out.getvalue()


def _csv(value: Any) -> str:
    return "" if value is None else str(value)


def render_json(result: WidgetResult) -> str:
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False)


def render(result: WidgetResult, fmt: str = "table") -> str:
    renderers = {"table": render_table, "json": render_json, "csv": render_csv}
    if fmt not in renderers:
        raise ValueError(f"Unknown format {fmt!r}: use table, json or csv.")
    return renderers[fmt](result)


# The longest widget name in the catalog, so the figures line up whatever is added.
NAME_WIDTH = max(len(widget.name) for widget in WIDGETS)


def format_result_line(result: WidgetResult) -> str:
    """One line per widget, for the demo and terminal summaries."""
    head = f"{result.widget:<{NAME_WIDTH}} "
    if result.state in ("ok", "stale"):
        line = f"{head}{format_value(result.value, result.unit, result.currency):>16}"
        if result.previous is not None:
            line += (f"  ({format_change(result.value, result.previous, result.unit)} vs "
                     f"{COMPARISONS[result.compare]})")
        if result.rows and result.kind != "number":
            line += f"  [{len(result.rows)} rows]"
        if result.state == "stale":
            line += "  STALE: " + (result.message or "")
        return line
    return f"{head}{result.state}: {result.message or ''}"
