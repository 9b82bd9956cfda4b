"""The widget catalog and its runner: what the CLI, the JSON API and the report page show."""

from reports.widgets.catalog import (
    WIDGETS,
    UnknownWidget,
    Widget,
    get_widget,
    widget_catalog,
)
from reports.widgets.formatting import (
    change_ratio,
    format_change,
    format_money,
    format_result_line,
    format_value,
    render,
    render_csv,
    render_json,
    render_table,
)
from reports.widgets.run import (
    COMPARISONS,
    NO_DATA,
    OK,
    RECONNECT,
    STALE,
    Period,
    WidgetResult,
    client_currencies,
    reporting_ready,
    resolve_compare,
    resolve_period,
    run_widget,
    run_widgets,
)

__all__ = [
    "COMPARISONS", "NO_DATA", "OK", "RECONNECT", "STALE", "WIDGETS", "Period", "UnknownWidget",
    "Widget",
    "WidgetResult", "change_ratio", "client_currencies", "format_change", "format_money",
    "format_result_line", "format_value", "get_widget", "render", "render_csv", "render_json",
    "render_table", "reporting_ready", "resolve_compare", "resolve_period", "run_widget",
    "run_widgets",
    "widget_catalog",
]
