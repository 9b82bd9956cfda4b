"""Per-client settings from workspace_config/clients.yaml (cadence, rate, key variable)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml

from resources.settings import load_settings

DEFAULT_SCHEDULE = "0 * * * *"


@dataclass(frozen=True)
class ClientConfig:
    client_id: str
    name: str | None = None
    key_env: str | None = None
    schedule: str = DEFAULT_SCHEDULE
    max_requests_per_second: float | None = None
    stripe_account: str | None = None

    def key_from_env(self) -> str | None:
        return os.environ.get(self.key_env) if self.key_env else None

    @property
    def stale_after(self) -> timedelta:
        """How old the last successful sync may be before widgets say `stale`."""
        return 2 * schedule_interval(self.schedule) + timedelta(minutes=15)


def schedule_interval(cron: str) -> timedelta:
    """A rough period for common cron shapes; enough to judge staleness."""
    minute, hour, day_of_month, _month, day_of_week = (cron.split() + ["*"] * 5)[:5]
    if minute.startswith("*/"):
        return timedelta(minutes=int(minute[2:]))
    if minute == "*":
        return timedelta(minutes=1)
    if hour.startswith("*/"):
        return timedelta(hours=int(hour[2:]))
    if hour == "*":
        return timedelta(hours=1)
    if day_of_month == "*" and day_of_week == "*":
        return timedelta(days=1)
    if day_of_week != "*":
        return timedelta(days=7)
    return timedelta(days=31)


def load_client_configs(path: Path | None = None) -> dict[str, ClientConfig]:
    path = path or load_settings().clients_file
    if not path.exists():
        return {}
    document = yaml.safe_load(path.read_text()) or {}
    entries = document.get("clients") or {}
    return {
        client_id: ClientConfig(client_id=client_id, **(entry or {}))
        for client_id, entry in entries.items()
    }


def client_config(client_id: str) -> ClientConfig:
    return load_client_configs().get(client_id) or ClientConfig(client_id=client_id)
