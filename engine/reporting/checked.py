"""A client checked with nothing new: its reporting tables stay as built, counted as current.

The stripe_sync op asks this after a sync that landed nothing. When no build is due
(engine.reporting.build.due_after), the freshness and last-sync records move to now and
the op materializes nothing, so Dagster skips the reporting step: no work for no change.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from engine.client_config import client_config
from engine.clients import client_status
from engine.connection_store import ClientNotConnected, ConnectionStore
from engine.freshness import latest_failure
from engine.reporting.build import due_after, mark_checked, read_last_build
from engine.warehouse import Warehouse


def client_state(store: ConnectionStore, client_id: str) -> str:
    """How the client stands, as reporting.clients records it."""
    return client_status(client_id, store.get(client_id), client_config(client_id)).standing.value


def checked_without_build(store: ConnectionStore, warehouse: Warehouse, client_id: str) -> bool:
    """Record the client as checked now if its reporting tables need no build; whether so."""
    now = datetime.now(UTC)
    if not no_build_due(store, warehouse, client_id, now):
        return False
    mark_clients_checked(store, warehouse, {client_id: now})
    return True


def no_build_due(store: ConnectionStore, warehouse: Warehouse, client_id: str,
                 now: datetime) -> bool:
    """Whether the client's reporting tables need no build at `now` (nothing new since the
    last build, the day not turned, nothing failed since): then it can be marked checked.
    A failure since the last build makes the run go the whole way (its checks run again and
    say whether it still holds), never hiding it."""
    state = client_state(store, client_id)
    with warehouse.reader() as conn:
        last = read_last_build(conn, client_id)
    if last is None or due_after(last, client_id, state=state, now=now):
        return False
    failure = latest_failure(last.failed, last.started)
    return failure is None or (last.built_at is not None and failure[0] < last.built_at)


def mark_clients_checked(store: ConnectionStore, warehouse: Warehouse,
                         checked: dict[str, datetime]) -> None:
    """Each client's figures count as built, and it as synced, when it was checked: in one
    writer session for all of them (a batch run's clients: the file's writer lock is taken
    once, not once per client)."""
    if not checked:
        return
    with warehouse.writer() as conn:
        mark_checked(conn, checked)
    for client_id, at in checked.items():
        with contextlib.suppress(ClientNotConnected):  # env-only clients have no row
            store.record_sync(client_id, at)
