"""The console's client list: each client's state in words, last sync, next run, last
delivery; clients needing attention first; a search over ids and names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from apps.web.common import AppState, client_ids, display_name, when
from engine.client_config import client_config
from engine.clients import ClientStatus, Standing, roster_or_error
from engine.cron import CronError, parse_cron
from engine.delivery_log import HELD, SENT, DeliveryLog

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
    """The schedule's next run after `now` (UTC, as the schedules run)."""
    try:
        cron = parse_cron(schedule)
    except CronError:
        return None
    times = sorted(time(hour, minute) for hour in cron.hours for minute in cron.minutes)
    for offset in range(366 * 4):  # a 29 February schedule fires within four years
        day = now.date() + timedelta(days=offset)
        by_date, by_weekday = day.day in cron.days, day.isoweekday() % 7 in cron.weekdays
        fires = (by_date or by_weekday) if cron.either_day else (by_date and by_weekday)
        if day.month not in cron.months or not fires:
            continue
        for at in times:
            when = datetime.combine(day, at, tzinfo=UTC)
            if when > now:
                return when
    return None


def _age(since: timedelta) -> str:
    hours = since.total_seconds() / 3600
    return f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.0f} days"


def describe(status: ClientStatus | None, now: datetime) -> tuple[str, str, str]:
    """(state, kind, detail) in the words an operator acts on, from engine.clients' rule."""
    if status is None:
        return "not connected", ATTENTION, "Reporting data but no key: add one."
    connection = status.connection
    if status.standing is Standing.FAILED:
        return "reconnect required", ATTENTION, (connection.reason if connection else "") or \
            "The key check failed."
    if status.standing is Standing.DISCONNECTED:
        return "key removed", ATTENTION, "Add a new key in the reconnect panel."
    if status.standing is Standing.NO_KEY:
        return "no key", ATTENTION, status.why or "Add a key in the reconnect panel."
    if status.standing is Standing.LEFT_OUT:
        return "clients.yaml entry at fault", ATTENTION, status.why or ""
    last_sync = connection.last_sync_at if connection else None
    if last_sync is None:
        return "waiting for first sync", WAITING, "Connected; the first sync has not finished."
    stale_after = (status.config or client_config(status.client_id)).stale_after
    if now - last_sync > stale_after:
        return ("figures out of date", ATTENTION,
                f"The last successful sync was {_age(now - last_sync)} ago; the schedule "
                f"expects one every {stale_after}.")
    return "up to date", HEALTHY, ""


def client_rows(state: AppState, query: str = "") -> list[ClientRow]:
    """Every client, those needing attention first, then by name; `query` filters."""
    now = datetime.now(UTC)
    roster = roster_or_error(state.store).clients
    rows = []
    needle = query.strip().lower()
    deliveries = last_deliveries(state)
    for client_id in sorted(set(roster) | set(client_ids(state))):
        status = roster.get(client_id)
        name = display_name(client_id, status.connection if status else None)
        if needle and needle not in client_id.lower() and needle not in name.lower():
            continue
        config = client_config(client_id)
        label, kind, detail = describe(status, now)
        rows.append(ClientRow(
            client_id, name, label, kind, detail,
            status.connection.last_sync_at if status and status.connection else None,
            next_run(config.schedule, now) if status and status.active else None,
            deliveries.get(client_id), bool(status and status.key_env)))
    order = {ATTENTION: 0, WAITING: 1, HEALTHY: 2}
    return sorted(rows, key=lambda r: (order[r.kind], r.name.lower(), r.client_id))


def last_deliveries(state: AppState) -> dict[str, str]:
    """Each client's latest delivery in words (`sent 1 Dec 2026, 06:00 UTC`, `held: why`),
    from the delivery log: read once for the whole list."""
    latest: dict[str, str] = {}
    for record in DeliveryLog.from_settings(state.settings).records():  # oldest first
        if record.status == SENT and record.sent_at:
            latest[record.client_id] = f"sent {when(record.sent_at)}"
        elif record.status == HELD:
            latest[record.client_id] = f"held: {record.reason or 'waiting for good data'}"
    return latest
