"""Widget query latency over the reporting tables, the way the CLI and report page ask.

Each widget of the catalog runs `repeats` times through `reports.widgets.run_widget`
(its own read-only connection each call, as `stripe-reports widget` does) and once more
as part of `run_widgets` (one connection for the whole page, as the report page does).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class WidgetLatency:
    calls: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    max_ms: float = 0.0
    page_ms: float = 0.0  # every widget at once through run_widgets
    build_s: float = 0.0  # building the client's reporting tables
    states: dict[str, str] = field(default_factory=dict)  # widget -> state
    slowest: list[tuple[str, float]] = field(default_factory=list)  # (widget, p95 ms)
    skipped: str | None = None


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def build_reporting(warehouse: Path, client_id: str) -> float:
    from engine.reporting import build_reporting_tables
    from engine.warehouse_factory import open_warehouse

    started = time.perf_counter()
    with open_warehouse(warehouse).writer() as conn:
        build_reporting_tables(conn, client_id)
    return time.perf_counter() - started


def measure_widgets(warehouse: Path, client_id: str, repeats: int = 20) -> WidgetLatency:
    try:
        from reports.widgets import WIDGETS, run_widget, run_widgets
    except ImportError as missing:
        return WidgetLatency(skipped=f"reports.widgets is not available ({missing})")
    from engine.connection_store import ConnectionStore
    from engine.warehouse_factory import open_warehouse

    result = WidgetLatency(build_s=build_reporting(warehouse, client_id))
    store = ConnectionStore.from_settings()
    wh = open_warehouse(warehouse)
    timings: list[float] = []
    per_widget: dict[str, list[float]] = {}
    for widget in WIDGETS:
        run_widget(client_id, widget, warehouse=wh, store=store)  # warm the file cache
        for _ in range(repeats):
            started = time.perf_counter()
            answer = run_widget(client_id, widget, warehouse=wh, store=store)
            elapsed = (time.perf_counter() - started) * 1000
            timings.append(elapsed)
            per_widget.setdefault(widget.name, []).append(elapsed)
        result.states[widget.name] = answer.state
    started = time.perf_counter()
    run_widgets(client_id, warehouse=wh, store=store)
    result.page_ms = (time.perf_counter() - started) * 1000
    store.close()
    result.calls = len(timings)
    result.p50_ms = statistics.median(timings)
    result.p95_ms = percentile(timings, 0.95)
    result.max_ms = max(timings)
    result.slowest = sorted(((name, percentile(values, 0.95)) for name, values in
                             per_widget.items()), key=lambda item: -item[1])[:5]
    return result
