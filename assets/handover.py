"""A batch run's check of a client, handed over to the client run it launches.

A batch run (pipelines/batches.py) syncs each of its clients first, outside any run: a
client with nothing new is recorded as checked there, without a run of its own (a run costs
~70 stored events and its own SQLite file). A client whose sync found something (or failed)
gets its `stripe_sync_job` run as before, and that run takes over what the batch's sync
found instead of syncing again: the rows it landed show in the run's materializations, a
failure fails the run with its usual message, and no request is made twice.

The hand-over is in-process: the batch run executes its clients' runs in its own process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass

from dagster import AssetKey

from engine.connection_store import ClientConnection
from engine.streams import StreamSpec
from engine.stripe_api import StripeAccount
from engine.sync import SyncReport


@dataclass
class ClientCheck:
    """One client's sync as a batch run made it: its report, or the error it ended with."""

    account: StripeAccount
    connection: ClientConnection | None
    streams: tuple[str, ...]
    assets: frozenset[AssetKey]
    report: SyncReport | None = None
    error: Exception | None = None

    def outcome(self) -> SyncReport:
        """The report; the sync's error raised again, where the client run handles it."""
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


_LOCK = threading.Lock()
_HANDED: dict[str, ClientCheck] = {}


@contextmanager
def handing_over(check: ClientCheck) -> Iterator[None]:
    """While the client's run executes: it takes `check` over (once)."""
    client = check.account.client_id
    with _LOCK:
        _HANDED[client] = check
    try:
        yield
    finally:
        with _LOCK:
            _HANDED.pop(client, None)  # a run that failed before its sync never took it


def taken_over(client_id: str, specs: list[StreamSpec], full_refresh: bool,
               selected: AbstractSet[AssetKey]) -> ClientCheck | None:
    """The batch's check of the client, if one was handed over for exactly this run's
    work (same streams and assets, incremental); else None and the run syncs itself."""
    with _LOCK:
        check = _HANDED.pop(client_id, None)
    if check is None or full_refresh:
        return None
    if check.streams != tuple(s.name for s in specs) or not check.assets >= selected:
        return None
    return check
