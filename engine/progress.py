"""Where sync progress goes besides the Dagster log: the CLI installs a sink to draw it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

ProgressSink = Callable[[str, str, int, int], None]  # client, stream, rows, requests

_sinks: list[ProgressSink] = []


@contextlib.contextmanager
def progress_sink(sink: ProgressSink | None) -> Iterator[None]:
    """Send progress to `sink` while the block runs (a process may sync many clients)."""
    if sink is None:
        yield
        return
    _sinks.append(sink)
    try:
        yield
    finally:
        _sinks.remove(sink)


def report_progress(client_id: str, stream: str, rows: int, requests: int) -> None:
    for sink in _sinks:
        sink(client_id, stream, rows, requests)
