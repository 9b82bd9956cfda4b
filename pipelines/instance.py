"""The Dagster instance the CLI records runs in (the same one `dagster dev` shows)."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

from dagster import DagsterInstance

from assets.partitions import CLIENTS_PARTITION_NAME
from engine.connection_store import check_client_ids
from engine.credentials import ConnectOutcome, connect_client
from engine.settings import load_settings

TEMPLATE = Path(__file__).resolve().parent.parent / "dagster.yaml"


def ensure_dagster_home() -> Path:
    """Use $DAGSTER_HOME, or $STRIPE_REPORTS_HOME/dagster_home, seeded from dagster.yaml."""
    home = load_settings().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    if not config.exists() and TEMPLATE.exists():
        shutil.copyfile(TEMPLATE, config)
    return home


def get_instance() -> DagsterInstance:
    """The instance; the first opening (which creates its storage) is serialised across
    processes, so several `connect` or `sync` commands started at once do not race."""
    home = ensure_dagster_home()
    with open(home / ".init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return DagsterInstance.get()


def register_clients(instance: DagsterInstance, client_ids: list[str]) -> None:
    """Make each client a partition key (idempotent)."""
    check_client_ids(client_ids)  # every path registers here: no bad id becomes a partition
    known = set(instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME))
    missing = [c for c in client_ids if c not in known]
    if missing:
        instance.add_dynamic_partitions(CLIENTS_PARTITION_NAME, missing)


def connect_and_register(client_id: str, raw_key: str, **options: Any) -> ConnectOutcome:
    """Connect a client's key and make the client a partition: what every connect path does."""
    outcome = connect_client(client_id, raw_key, **options)
    register_clients(get_instance(), [client_id])
    return outcome


def unregister_client(instance: DagsterInstance, client_id: str) -> None:
    if instance.has_dynamic_partition(CLIENTS_PARTITION_NAME, client_id):
        instance.delete_dynamic_partition(CLIENTS_PARTITION_NAME, client_id)
