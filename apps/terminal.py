"""What the CLI draws: tables with a header row, states in colour on a terminal, live sync
progress, and each client's sync outcome in words.

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
from rich.text import Text

if TYPE_CHECKING:  # only a type: importing Dagster here would slow every command
    from pipelines.client_runs import ClientSyncOutcome

# One word per state everywhere (CONTRACT.md): connection states, check and sync outcomes.
STATE_STYLES = {
    "connected": "green", "ok": "green", "synced": "green",
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


def console(out: TextIO | None = None) -> Console:
    """A console on `out` (standard output by default): colour only on a terminal."""
    return _Console(file=out or sys.stdout, highlight=False, markup=False, emoji=False,
                    soft_wrap=True)


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 request`, `2,094 requests`."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def print_table(out: Console, header: Sequence[str], rows: Sequence[Sequence[str]],
                styled: Sequence[int] = (), right: Sequence[int] = ()) -> None:
    """Columns aligned under a header row; cells in `styled` columns are coloured by state,
    cells in `right` columns are right-aligned (numbers). Plain text when piped."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out.print(Text("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
                   style="bold"))
    for row in rows:
        line = Text()
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            text = str(cell).rjust(width) if i in right else str(cell).ljust(width)
            if i:
                line.append("  ")
            line.append(text, style=STATE_STYLES.get(str(cell), "") if i in styled else "")
        line.rstrip()
        out.print(line)


def print_steps(out: Console, steps: Sequence[str], indent: str = "  ") -> None:
    for number, step in enumerate(steps, start=1):
        out.print(f"{indent}{number}. {step}")


class SyncProgressView:
    """One line per client, redrawn in place on a terminal; silent when piped."""

    def __init__(self, clients: list[str], out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.rows: dict[str, dict[str, int]] = {c: {} for c in clients}
        self.requests: dict[str, dict[str, int]] = {c: {} for c in clients}
        self.status: dict[str, str] = {c: "syncing" for c in clients}
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._drawn = 0

    def update(self, client: str, stream: str, rows: int, requests: int) -> None:
        with self._lock:
            self.rows.setdefault(client, {})[stream] = rows
            self.requests.setdefault(client, {})[stream] = requests
            self._draw()

    def done(self, outcome: ClientSyncOutcome) -> None:
        with self._lock:
            self.status[outcome.client_id] = "synced" if outcome.success else "FAILED"
            self._draw()

    def close(self) -> None:
        with self._lock:
            self._draw()
            if self.live:
                self.out.write("\n")

    def _draw(self) -> None:
        if not self.live:
            return
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")
        elapsed = time.monotonic() - self.started
        for client, status in self.status.items():
            rows = sum(self.rows.get(client, {}).values())
            requests = sum(self.requests.get(client, {}).values())
            line = (f"{client:<20} {status:<8} {plural(rows, 'row'):>14}  "
                    f"{plural(requests, 'request'):>14}")
            self.out.write(f"\x1b[2K{line}  {elapsed:6.1f}s\n")
        self._drawn = len(self.status)
        self.out.flush()


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
    head.append(state_text("synced" if outcome.success else "FAILED"))
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
