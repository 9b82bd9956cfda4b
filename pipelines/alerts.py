"""Alerts: a run that failed on a client's Stripe key becomes one alert line per client.

The line goes to the sensor's log (the Dagster UI shows it on the sensor's tick) and, when
STRIPE_REPORTS_ALERT_WEBHOOK is set, is POSTed there as JSON
`{client, message, steps, masked_key}`. The reason and steps are read from the connection
store, where the failing run recorded them, so an alert says what `stripe-reports clients`
and the widgets say.

Which failures count: a step failure whose metadata names a `client` with its `masked_key`
(the Stripe assets' credential failure), or lists `failed_clients` (the daily credential
watch). A 429, an outage or a failed stream carry neither and raise no alert.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from engine.connection_store import ConnectionState, ConnectionStore
from engine.settings import load_settings

# Failure metadata naming several clients at once, comma-separated (pipelines.credential_watch).
FAILED_CLIENTS_METADATA = "failed_clients"
WEBHOOK_TIMEOUT_SECONDS = 5.0
SENSOR_NAME = "credential_failure_alerts"
LOOK_BACK = timedelta(days=1)
RUNS_PER_TICK = 100


@dataclass(frozen=True)
class FailedClient:
    """A client a failed step blamed on its credentials, with what the step said."""

    client: str
    masked_key: str = ""
    description: str = ""


@dataclass(frozen=True)
class CredentialAlert:
    client: str
    message: str
    steps: tuple[str, ...]
    masked_key: str

    def line(self) -> str:
        """One line, whatever the reason holds: log readers and chat hooks see one entry."""
        text = f"Stripe credentials failed for client {self.client!r}"
        if self.masked_key:
            text += f" (key {self.masked_key})"
        text += f": {self.message}"
        if self.steps:
            text += " To fix: " + " ".join(
                f"{number}. {step}" for number, step in enumerate(self.steps, start=1)
            )
        return " ".join(text.split())

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = list(self.steps)
        return data


def _text(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def credential_failures(step_failures: Sequence[DagsterEvent]) -> list[FailedClient]:
    """The clients named by credential failures among a run's step failures, once each."""
    found: dict[str, FailedClient] = {}
    for event in step_failures:
        data = event.step_failure_data.user_failure_data if event.is_step_failure else None
        if data is None:
            continue
        metadata = data.metadata or {}
        if "client" in metadata and "masked_key" in metadata:
            client = _text(metadata["client"])
            found.setdefault(client, FailedClient(
                client, _text(metadata["masked_key"]), data.description or ""))
        for client in _text(metadata.get(FAILED_CLIENTS_METADATA)).split(","):
            if client.strip():
                found.setdefault(client.strip(), FailedClient(client.strip()))
    return list(found.values())


def _from_description(failed: FailedClient) -> CredentialAlert:
    """A client the store does not know (declared in clients.yaml): the step's own words."""
    lines = [line.strip() for line in failed.description.splitlines() if line.strip()]
    message = lines[0] if lines else "Stripe refused the client's key."
    steps = tuple(line.split(". ", 1)[-1] for line in lines[1:])
    return CredentialAlert(failed.client, message, steps, failed.masked_key)


def build_alerts(failed: Sequence[FailedClient], store: ConnectionStore,
                 log: logging.Logger) -> list[CredentialAlert]:
    """One alert per client still failed in the store; reconnected clients need none."""
    alerts = []
    for client in failed:
        connection = store.get(client.client)
        if connection is None:
            alerts.append(_from_description(client))
        elif connection.state is ConnectionState.FAILED:
            alerts.append(CredentialAlert(
                client.client, connection.reason or "Stripe refused the client's key.",
                connection.steps, connection.masked_key or client.masked_key,
            ))
        else:
            log.info(f"{client.client}: no alert, the connection is {connection.state.value} now.")
    return alerts


def _describe(error: Exception) -> str:
    # The webhook URL often holds a token (Slack, Teams): never quote it.
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    if isinstance(error, httpx.TransportError):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__


def post_alert(alert: CredentialAlert, url: str, log: logging.Logger) -> bool:
    """POST the alert; a webhook that fails is logged, never raised (the alert is logged too)."""
    try:
        response = httpx.post(url, json=alert.payload(), timeout=WEBHOOK_TIMEOUT_SECONDS)
        response.raise_for_status()
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        host = urlsplit(url).hostname or "the configured URL"
        log.warning(f"{alert.client}: the alert could not be sent to the webhook at {host} "
                    f"({_describe(error)}).")
        return False
    return True


def raise_alerts(alerts: Sequence[CredentialAlert], log: logging.Logger,
                 webhook_url: str | None) -> None:
    for alert in alerts:
        log.error(alert.line())
        if webhook_url:
            post_alert(alert, webhook_url, log)


def _look_back_start(instance: DagsterInstance) -> int:
    """Where a sensor switched on for the first time starts: the failures of the last
    LOOK_BACK (a demo's or a CLI sync's from before the daemon ran), not the whole history."""
    cutoff = (datetime.now(UTC) - LOOK_BACK).timestamp()
    first = instance.fetch_run_status_changes(
        RunStatusChangeRecordsFilter(DagsterEventType.RUN_FAILURE, after_timestamp=cutoff),
        limit=1, ascending=True).records
    if first:
        return first[0].storage_id - 1
    latest = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=1).records
    return latest[0].storage_id if latest else 0


def alert_failed_runs(instance: DagsterInstance, after: int,
                      log: logging.Logger) -> tuple[int, int]:
    """Alert the credential failures of the runs that failed after storage id `after`;
    the new cursor and how many failed runs were read."""
    records = instance.fetch_run_status_changes(
        RunStatusChangeRecordsFilter(DagsterEventType.RUN_FAILURE, after_storage_id=after),
        limit=RUNS_PER_TICK, ascending=True).records
    failed = []
    for record in records:
        entries = instance.all_logs(record.event_log_entry.run_id,
                                    of_type=DagsterEventType.STEP_FAILURE)
        failed += credential_failures([e.dagster_event for e in entries if e.dagster_event])
    if failed:
        settings = load_settings()
        with ConnectionStore.from_settings(settings) as store:
            alerts = build_alerts(failed, store, log)
        raise_alerts(alerts, log, settings.alert_webhook_url)
    return (records[-1].storage_id if records else after), len(records)


@sensor(
    name=SENSOR_NAME,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Turns a run that failed on a client's Stripe key into one alert line per "
    "client (log, and STRIPE_REPORTS_ALERT_WEBHOOK when set), with the reason and the "
    "reconnect steps from the connection store. Watches every run of the instance (CLI and "
    "web syncs too); first switched on, it reads the failures of the last day.",
)
def credential_alert_sensor(context: SensorEvaluationContext) -> SkipReason:
    after = int(context.cursor) if context.cursor else _look_back_start(context.instance)
    cursor, read = alert_failed_runs(context.instance, after, context.log)
    context.update_cursor(str(cursor))
    # A sensor that launches no run reports a skipped tick; this one says what it read.
    return SkipReason(f"{read} failed run(s) read.")
