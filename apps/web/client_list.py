"""The console's client list: each client's state in words, last sync, next run, last
delivery; clients needing attention first; a search over ids and names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from apps.web.common import AppState, client_ids, display_name
from engine.client_config import ClientConfig, client_config
from engine.connection_store import ClientConnection, ConnectionState

ATTENTION, WAITING, HEALTHY = "attention", "waiting", "healthy"


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    name: str
    state: str  # what is happening, in words
    kind: str  # ATTENTION, WAITING or HEALTHY: the order and the colour
    detail: str
    last_sync_at: datetime | None
    next_run_at: datetime | None
    last_delivery: str | None
    key_from_env: bool


def next_run(schedule: str, now: datetime) -> datetime | None:
    # Dagster's own cron reading, so the console agrees with the schedules.
    from dagster._utils.schedules import cron_string_iterator

    try:
        return next(cron_string_iterator(now.timestamp(), schedule, "UTC"))
    except (ValueError, StopIteration):
        return None


def describe(connection: ClientConnection | None, config: ClientConfig,
             now: datetime) -> tuple[str, str, str]:
    """(state, kind, detail) in the words an operator acts on."""
    env_key = bool(config.key_from_env())
    if connection is None and not env_key:
        return "not connected", ATTENTION, "No Stripe key: add one in the reconnect panel."
    if connection is not None and connection.state is ConnectionState.FAILED:
        return "reconnect required", ATTENTION, connection.reason or "The key check failed."
    if connection is not None and connection.state is ConnectionState.DISCONNECTED \
            and not env_key:
        return "key removed", ATTENTION, "Add a new key in the reconnect panel."
    last_sync = connection.last_sync_at if connection else None
    if last_sync is None:
        return "waiting for first sync", WAITING, "Connected; the first sync has not finished."
    if now - last_sync > config.stale_after:
        hours = (now - last_sync).total_seconds() / 3600
        age = f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.0f} days"
        return ("figures out of date", ATTENTION,
                f"The last successful sync was {age} ago; the schedule expects one every "
                f"{config.stale_after}.")
    return "up to date", HEALTHY, ""


def client_rows(state: AppState, query: str = "") -> list[ClientRow]:
    """Every client, those needing attention first, then by name; `query` filters."""
    now = datetime.now(UTC)
    connections = {c.client_id: c for c in state.store.list()}
    rows = []
    needle = query.strip().lower()
    for client_id in client_ids(state):
        connection = connections.get(client_id)
        name = display_name(client_id, connection)
        if needle and needle not in client_id.lower() and needle not in name.lower():
            continue
        config = client_config(client_id)
        label, kind, detail = describe(connection, config, now)
        rows.append(ClientRow(
            client_id, name, label, kind, detail,
            connection.last_sync_at if connection else None,
            next_run(config.schedule, now), last_delivery(state, client_id),
            bool(config.key_from_env())))
    order = {ATTENTION: 0, WAITING: 1, HEALTHY: 2}
    return sorted(rows, key=lambda r: (order[r.kind], r.name.lower(), r.client_id))


def last_delivery(_state: AppState, _client_id: str) -> str | None:
    """The last delivery of the client's report (filled in by scheduled delivery)."""
    return None
