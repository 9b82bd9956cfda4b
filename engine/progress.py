"""Where sync progress goes besides the Dagster log: the CLI installs a sink to draw it."""

from __future__ import annotations

from collections.abc import Callable

ProgressSink = Callable[[str, str, int, int], None]  # client, stream, rows, requests

_sinks: list[ProgressSink] = []


def add_progress_sink(sink: ProgressSink) -> None:
    _sinks.append(sink)


def report_progress(client_id: str, stream: str, rows: int, requests: int) -> None:
    for sink in _sinks:
        sink(client_id, stream, rows, requests)
