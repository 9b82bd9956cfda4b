"""One delivery of a client's report, gated on good data.

The report goes out only if the client's key passes its credential check now and the last
successful sync (the figures' build time) is after the period's last day. Otherwise the
client gets nothing and the agency's address gets the reason with the operator's steps; the
delivery stays held until a later sync makes it good (`held_ready`), and a period is sent
at most once (engine/delivery_log.py). Dagster wraps `deliver` in `stripe_delivery_job`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from engine.client_config import client_config, read_clients_file
from engine.connection_store import ClientConnection, ClientNotConnected, ConnectionStore
from engine.credentials import check_client, open_account
from engine.deliveries import DueDelivery, due_delivery
from engine.delivery_log import HELD, SENT, DeliveryLog
from engine.failures import StripeAccessError, TransientStripeError, reconnect_steps
from engine.freshness import read_built_at
from engine.mail import MailError, held_notice, report_email, send, write_eml
from engine.report_print import RenderError
from engine.settings import MailSettings, load_mail_settings
from engine.stripe_api import verify_account
from engine.warehouse_factory import warehouse_from_settings

SENT_NOW, HELD_NOW, ALREADY_SENT, FAILED = "sent", "held", "already_sent", "failed"
# Renders the client's report for a period to a PDF file (the report page, printed).
Renderer = Callable[[str, date, date, Path], Path]


@dataclass
class DeliveryOutcome:
    client_id: str
    period: str
    start: date
    end: date
    to: tuple[str, ...]
    status: str
    reason: str | None = None
    agency_notified: bool = False
    pdf: str | None = None
    # No SMTP server set: the email was written to the outbox only.
    outbox_only: bool = False

    @property
    def delivered(self) -> bool:
        return self.status in (SENT_NOW, ALREADY_SENT)

    def metadata(self) -> dict[str, Any]:
        """What the Dagster run shows: sent or held, why, to whom (no key, no SMTP URL)."""
        return {"status": self.status, "client": self.client_id, "period": self.period,
                "start": self.start.isoformat(), "end": self.end.isoformat(),
                "to": ", ".join(self.to), "reason": self.reason or "",
                "agency_notified": self.agency_notified, "pdf": self.pdf or "",
                "outbox_only": self.outbox_only}


def period_label(start: date, end: date) -> str:
    if start.year == end.year:
        first = f"{start.day} {start:%b}" if start.month != end.month else str(start.day)
        return f"{first} – {end.day} {end:%b %Y}"
    return f"{start.day} {start:%b %Y} – {end.day} {end:%b %Y}"


def client_name(client_id: str, connection: ClientConnection | None) -> str:
    config = client_config(client_id)
    if config.name:
        return config.name
    if connection is None:
        return client_id
    if connection.name == client_id and connection.account_name:
        return connection.account_name
    return connection.name


def credential_problem(client_id: str, store: ConnectionStore) -> tuple[str, list[str]] | None:
    """Why the client's key cannot be trusted now (the check is run and recorded), or None."""
    try:
        if store.get(client_id) is None:  # a clients.yaml client: its key is in a variable
            account, _ = open_account(client_id, store=store)
            verify_account(account, None)
            return None
        connection = check_client(client_id, store=store)
    except ClientNotConnected as error:
        return str(error), list(reconnect_steps(client_id, key_env=client_config(
            client_id).key_env))
    except TransientStripeError as error:
        return (f"Stripe did not answer the check of the client's key ({error.message}); "
                "the report waits for a check that passes.", [])
    except StripeAccessError as failure:
        return failure.message, list(failure.steps or reconnect_steps(client_id))
    if connection.last_check_ok:
        return None
    return (connection.reason or "The client's Stripe key failed its check.",
            list(connection.steps) or list(reconnect_steps(client_id)))


def coverage_problem(client_id: str, due: DueDelivery,
                     built_at: datetime | None) -> tuple[str, list[str]] | None:
    """Why the figures do not cover the whole period, or None."""
    steps = [f"See the client's latest stripe_sync_job runs (partition {client_id}) in the "
             "Dagster UI for why syncs stopped.",
             f"Run `stripe-reports sync {client_id}`: the report is sent by itself once a "
             "sync covers the period."]
    if built_at is None:
        return "No sync has built this client's figures yet.", steps
    period_over = datetime.combine(due.end + timedelta(days=1), time(), UTC)
    if built_at < period_over:
        return (f"The last successful sync ({built_at:%Y-%m-%d %H:%M} UTC) was before the end "
                f"of the period ({due.end}), so the report would miss part of it.", steps)
    return None


def read_figures_built_at(client_id: str) -> datetime | None:
    with warehouse_from_settings().reader() as conn:
        return read_built_at(conn, client_id)


def deliver(due: DueDelivery, render: Renderer, *, run_id: str | None = None) -> DeliveryOutcome:
    """Send the client's report for the period, or hold it and tell the agency why."""
    settings = load_mail_settings()
    outcome = DeliveryOutcome(due.client_id, due.period, due.start, due.end, due.to, HELD_NOW)
    with ConnectionStore.from_settings() as store, DeliveryLog.from_settings() as log:
        previous = log.get(due.key)
        if previous and previous.status == SENT:
            outcome.status = ALREADY_SENT
            outcome.reason = f"Sent already, at {previous.sent_at:%Y-%m-%d %H:%M} UTC."
            return outcome
        name = client_name(due.client_id, store.get(due.client_id))
        built_at = read_figures_built_at(due.client_id)
        problem = (credential_problem(due.client_id, store)
                   or coverage_problem(due.client_id, due, built_at))
        if problem:
            return _hold(outcome, settings, log, name, problem, built_at, run_id)
        if log.claim(due, run_id) is None:
            outcome.status, outcome.reason = ALREADY_SENT, "Another run is sending it."
            return outcome
        try:
            _send_report(outcome, settings, due, name, render)
        except (RenderError, MailError) as error:
            log.record_held(due, str(error), built_at, run_id, notified=False)
            outcome.status, outcome.reason = FAILED, str(error)
            return outcome
        log.record_sent(due, run_id)
    return outcome


def _outbox_path(settings: MailSettings, due: DueDelivery, suffix: str) -> Path:
    return settings.outbox / due.client_id / f"{due.client_id}-{due.start}-{due.end}{suffix}"


def _send_report(outcome: DeliveryOutcome, settings: MailSettings, due: DueDelivery,
                 name: str, render: Renderer) -> None:
    pdf = render(due.client_id, due.start, due.end, _outbox_path(settings, due, ".pdf"))
    message = report_email(settings, list(due.to), name, period_label(due.start, due.end), pdf)
    write_eml(message, _outbox_path(settings, due, ".eml"))
    outcome.pdf = str(pdf)
    if settings.smtp_url:
        send(settings, message)
    else:
        outcome.outbox_only = True
    outcome.status = SENT_NOW
    outcome.reason = ("Written to the outbox (no SMTP server is set)." if outcome.outbox_only
                      else "The client's key passed its check and the last sync covers the "
                      "period.")


def _hold(outcome: DeliveryOutcome, settings: MailSettings, log: DeliveryLog, name: str,
          problem: tuple[str, list[str]], built_at: datetime | None,
          run_id: str | None) -> DeliveryOutcome:
    reason, steps = problem
    due = DueDelivery(outcome.client_id, outcome.period, outcome.start, outcome.end, outcome.to)
    previous = log.get(due.key)
    # The agency hears of a hold once per reason, not at every retry.
    tell = settings.agency_email is not None and not (
        previous and previous.status == HELD and previous.reason == reason
        and previous.agency_notified_at)
    if tell:
        notice = held_notice(settings, name, due.client_id, period_label(due.start, due.end),
                             list(due.to), reason, steps)
        write_eml(notice, _outbox_path(settings, due, "-held.eml"))
        try:
            if settings.smtp_url:
                send(settings, notice)
        except MailError as error:
            reason = f"{reason} (The agency could not be told: {error})"
            tell = False
    log.record_held(due, reason, built_at, run_id, notified=tell)
    outcome.status, outcome.reason, outcome.agency_notified = HELD_NOW, reason, tell
    return outcome


def due_deliveries(today: date, client_ids: list[str] | None = None) -> list[DueDelivery]:
    """What every client's `deliveries` (clients.yaml) owes as of `today`."""
    configs = read_clients_file().configs
    return [due_delivery(client_id, spec, today)
            for client_id, config in sorted(configs.items())
            if client_ids is None or client_id in client_ids
            for spec in config.deliveries]


def pending(due: DueDelivery, log: DeliveryLog) -> str | None:
    """Why `due` should be attempted now (a run key suffix), or None: never tried, or held
    and the client's figures were built again since (the next sync)."""
    record = log.get(due.key)
    if record is None:
        return "first"
    if record.status != HELD:
        return None
    built_at = read_figures_built_at(due.client_id)
    if built_at is not None and (record.held_built_at is None or built_at > record.held_built_at):
        return f"after-sync@{built_at.isoformat()}"
    return None
