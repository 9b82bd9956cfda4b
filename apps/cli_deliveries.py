"""`stripe-reports deliver` (a delivery now, as Dagster runs) and `stripe-reports deliveries`
(the scheduled deliveries of clients.yaml: list, add, remove)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click
import yaml
from pydantic import ValidationError

from engine.client_config import Delivery, check_emails, read_clients_file
from engine.deliveries import DueDelivery, describe, due_delivery, period_dates
from engine.delivery_log import DeliveryLog
from engine.settings import load_settings
from pipelines.definitions import defs
from pipelines.deliveries import DELIVERY_JOB_NAME, run_delivery
from pipelines.instance import get_instance, register_clients


def planned(clients: list[str], period: str | None, to: tuple[str, ...]) -> list[DueDelivery]:
    """What `deliver` sends: each client's declared deliveries (their latest periods), or the
    one --period; --to replaces the recipients."""
    today = datetime.now(UTC).date()
    configs = read_clients_file().configs
    recipients = check_emails(to) if to else ()
    dues = []
    for client in clients:
        specs = configs[client].deliveries if client in configs else ()
        if period or not specs:
            chosen = period or "last_month"
            people = recipients or tuple(dict.fromkeys(a for s in specs for a in s.to))
            if not people:
                raise click.UsageError(f"Client '{client}' has no deliveries in clients.yaml: "
                                       "give the recipients with --to.")
            dues.append(DueDelivery(client, chosen, *period_dates(chosen, today), people))
            continue
        for spec in specs:
            due = due_delivery(client, spec, today)
            dues.append(DueDelivery(client, due.period, due.start, due.end,
                                    recipients or due.to))
    return dues


def deliver(dues: list[DueDelivery], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    instance = get_instance()
    register_clients(instance, sorted({d.client_id for d in dues}))
    job_def = defs.resolve_job_def(DELIVERY_JOB_NAME)
    failed = 0
    for due in dues:
        run_id, meta = run_delivery(job_def, due, instance, "cli")
        status = meta.get("status", "failed")
        failed += status not in ("sent", "already_sent")
        out.write(f"{due.client_id}: {status} ({due.start} to {due.end}, to "
                  f"{', '.join(due.to)}) run {run_id[:8]}\n")
        if meta.get("reason"):
            out.write(f"  {meta['reason']}\n")
    return 1 if failed else 0


def clients_with_deliveries() -> list[str]:
    return sorted(c for c, config in read_clients_file().configs.items() if config.deliveries)


# -- managing clients.yaml's deliveries -------------------------------------------------------


def list_deliveries(clients: list[str], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    configs = read_clients_file().configs
    with DeliveryLog.from_settings() as log:
        for client in clients:
            specs = configs[client].deliveries if client in configs else ()
            out.write(f"{client}:{'' if specs else ' no deliveries'}\n")
            for number, spec in enumerate(specs, 1):
                record = log.get(due_delivery(client, spec, datetime.now(UTC).date()).key)
                last = f" · latest period: {record.status}" if record else ""
                out.write(f"  {number}. {describe(spec)}{last}\n")
    return 0


def _write_entry(client: str, change: Any) -> None:
    """Rewrite the client's entry in clients.yaml (the header comment is kept)."""
    path: Path = load_settings().clients_file
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    header = "".join(line + "\n" for line in text.splitlines()
                     if line.startswith("#")) if text else ""
    document = yaml.safe_load(text) or {}
    clients = document.get("clients") or {}
    entry = clients.get(client) or {}
    change(entry)
    if not entry.get("deliveries"):
        entry.pop("deliveries", None)
    clients[client] = entry or None
    document["clients"] = clients
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")


def add_delivery(client: str, cadence: str, day: str, period: str, to: tuple[str, ...]) -> int:
    value: str | int = int(day) if day.isdigit() else day.upper()
    try:
        spec = Delivery(cadence=cadence, day=value, period=period, to=list(to))
    except ValidationError as error:
        first = error.errors()[0]
        raise click.UsageError(f"{first['msg'].removeprefix('Value error, ')}.") from None
    _write_entry(client, lambda e: e.setdefault("deliveries", []).append(
        spec.model_dump(mode="json")))
    click.echo(f"{client}: added {describe(spec)}.")
    return 0


def remove_delivery(client: str, number: int) -> int:
    specs = read_clients_file().configs.get(client)
    count = len(specs.deliveries) if specs else 0
    if not 1 <= number <= count:
        raise click.UsageError(f"Client '{client}' has {count} deliveries: --remove takes a "
                               "number from `stripe-reports deliveries " + client + "`.")
    _write_entry(client, lambda e: e["deliveries"].pop(number - 1))
    click.echo(f"{client}: removed delivery {number}.")
    return 0
