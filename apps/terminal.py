"""What the CLI draws, through rich: tables with a header row, states in colour on a
terminal, live sync progress, and each client's sync outcome in words.

Colour comes from rich's Console, which writes plain text when the output is not a terminal
and honours NO_COLOR (and FORCE_COLOR, TERM=dumb).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # only a type: importing Dagster here would slow every command
    from pipelines.client_runs import ClientSyncOutcome

# One word per state everywhere (docs/interface.md): connection states, check and sync outcomes.
STATE_STYLES = {
    "connected": "green", "ok": "green", "synced": "green", "checked": "green",
    "failed": "bold red", "FAILED": "bold red",
    "disconnected": "yellow", "no_data": "yellow", "stale": "yellow",
    "reconnect_required": "bold red",
}


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away (`clients | head`): the CLI's main ends quietly, with the
        same exit code whoever wrote last (rich would exit 1 itself)."""
        self.quiet = True
        raise BrokenPipeError


# Piped output is read by scripts: no width to fit, so no row is wrapped or cut.
PIPE_WIDTH = 10_000


def console(out: TextIO | None = None) -> Console:
    """A console on `out` (standard output by default): colour only on a terminal."""
    out = out or sys.stdout
    terminal = out.isatty()
    return _Console(file=out, highlight=False, markup=False, emoji=False, soft_wrap=True,
                    width=None if terminal else PIPE_WIDTH)


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 request`, `2,094 requests`."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def print_table(out: Console, header: Sequence[str], rows: Sequence[Sequence[str]],
                styled: Sequence[int] = (), right: Sequence[int] = ()) -> None:
    """A rich table under a bold header row, without borders: cells in `styled` columns are
    coloured by state, cells in `right` columns are right-aligned (numbers). On a terminal
    long cells wrap within their column; piped, every row stays on one line."""
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_edge=False,
                  header_style="bold")
    for index, name in enumerate(header):
        table.add_column(name, justify="right" if index in right else "left",
                         no_wrap=not out.is_terminal)
    for row in rows:
        table.add_row(*(state_text(str(cell)) if i in styled else str(cell)
                        for i, cell in enumerate(row)))
    if out.is_terminal:
        out.print(table)
        return
    with out.capture() as captured:  # piped: the padding after each row's last cell dropped
        out.print(table)
    out.print("\n".join(line.rstrip() for line in captured.get().splitlines()))


def print_steps(out: Console, steps: Sequence[str], indent: str = "  ") -> None:
    for number, step in enumerate(steps, start=1):
        out.print(f"{indent}{number}. {step}")


class SyncProgressView:
    """One row per client, redrawn in place on a terminal (rich's Live); silent when piped."""

    def __init__(self, clients: list[str], out: TextIO) -> None:
        self.rows: dict[str, dict[str, int]] = {c: {} for c in clients}
        self.requests: dict[str, dict[str, int]] = {c: {} for c in clients}
        self.status: dict[str, str] = {c: "syncing" for c in clients}
        self.started = time.monotonic()
        self._lock = threading.Lock()
        screen = console(out)
        self.live = Live(self._table(), console=screen, auto_refresh=False,
                         transient=False) if screen.is_terminal else None
        if self.live:
            self.live.start()

    def update(self, client: str, stream: str, rows: int, requests: int) -> None:
        with self._lock:
            self.rows.setdefault(client, {})[stream] = rows
            self.requests.setdefault(client, {})[stream] = requests
            self._draw()

    def done(self, outcome: ClientSyncOutcome) -> None:
        with self._lock:
            self.status[outcome.client_id] = "synced" if outcome.success else "FAILED"
            self._draw()

    def __enter__(self) -> SyncProgressView:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()  # an interrupted sync leaves its last row drawn, then a new line

    def close(self) -> None:
        with self._lock:
            if self.live:
                self.live.update(self._table(), refresh=True)
                self.live.stop()

    def _draw(self) -> None:
        if self.live:
            self.live.update(self._table(), refresh=True)

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_header=False, padding=(0, 2, 0, 0))
        for justify in ("left", "left", "right", "right", "right"):
            table.add_column(justify=justify, no_wrap=True)
        elapsed = f"{time.monotonic() - self.started:.1f}s"
        for client, status in self.status.items():
            rows = sum(self.rows.get(client, {}).values())
            requests = sum(self.requests.get(client, {}).values())
            table.add_row(client, state_text(status), plural(rows, "row"),
                          plural(requests, "request"), elapsed)
        return table


def describe_changes(meta: dict[str, Any]) -> str:
    """`12 new, 2,094 updated, 1 deleted · 3 requests`, or `no changes · 1 request`."""
    counts = [(meta.get("rows_inserted", 0), "new"), (meta.get("rows_updated", 0), "updated"),
              (meta.get("rows_deleted", 0), "deleted")]
    changes = ", ".join(f"{int(n):,} {word}" for n, word in counts if n) or "no changes"
    return f"{changes} · {plural(int(meta.get('api_requests', 0)), 'request')}"


def print_outcome(outcome: ClientSyncOutcome, out: TextIO) -> None:
    """A client's sync in words: each stream's changes, or the failure and its steps."""
    view = console(out)
    head = Text(f"{outcome.client_id}: ")
    if outcome.checked_without_run:
        head.append(state_text("checked"))
        requests = outcome.assets.get("stripe/balance", {}).get("api_requests", 0)
        head.append(f": nothing new since the last sync ({plural(requests, 'request')}), so "
                    "no run was needed (Dagster records the check on stripe/balance)")
    else:
        head.append(state_text("synced" if outcome.success else "FAILED"))
    if outcome.run_id:  # none when the run could not even be created
        head.append(f" (Dagster run {outcome.run_id})")
    view.print(head)
    if not outcome.success:
        for line in (outcome.message or "").splitlines():
            view.print(f"  {line}")
        return
    streams = {k: m for k, m in outcome.assets.items()
               if k.startswith("stripe/") and "rows_inserted" in m}
    width = max((len(k) for k in streams), default=0)
    for key, meta in sorted(streams.items()):
        view.print(f"  {key:<{width}}  {describe_changes(meta)}")
