"""What the CLI draws: live sync progress on a terminal, and each client's outcome."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from pipelines.sync import ClientSyncOutcome


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
            self.status[outcome.client_id] = "done" if outcome.success else "FAILED"
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
            line = f"{client:<20} {status:<8} {rows:>10,} rows  {requests:>7,} requests"
            self.out.write(f"\x1b[2K{line}  {elapsed:6.1f}s\n")
        self._drawn = len(self.status)
        self.out.flush()


def print_outcome(outcome: ClientSyncOutcome, out: TextIO) -> None:
    if outcome.success:
        out.write(f"{outcome.client_id}: synced (Dagster run {outcome.run_id})\n")
        for key, meta in sorted(outcome.assets.items()):
            if not key.startswith("stripe/"):
                continue
            if "rows_inserted" in meta:
                out.write(
                    f"  {key:<32} +{meta['rows_inserted']:<7} new  {meta['rows_updated']:<7} "
                    f"updated  {meta['rows_deleted']:<5} deleted  "
                    f"{meta['api_requests']} requests\n"
                )
        return
    out.write(f"{outcome.client_id}: FAILED (Dagster run {outcome.run_id})\n")
    for line in (outcome.message or "").splitlines():
        out.write(f"  {line}\n")
