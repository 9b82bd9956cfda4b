"""One rule decides which clients are active (engine/clients.py): the registration sensor, the
schedule, `sync --all`, the report page and `clients` agree on it; a key from the environment
is used and never stored, and withdrawing it stops the client."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import RunRequest, build_schedule_context, build_sensor_context
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from apps.web.app import create_app
from assets.partitions import CLIENTS_PARTITION_NAME
from engine.connection_store import ConnectionStore
from engine.encryption import KeyCipher
from engine.settings import load_settings
from pipelines.batches import batch_clients
from pipelines.definitions import defs
from pipelines.instance import get_instance, unregister_client
from pipelines.schedules import build_sync_schedules
from pipelines.sensors import register_clients_sensor
from sandbox import AccountSpec
from sandbox.world import KeyInfo
from tests.test_cli import SMALL, run_cli

TICK = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def declare(home: Path, body: str) -> None:
    (Path(home).parent / "clients.yaml").write_text("clients:\n" + body)


def sensor_registers() -> tuple[list[str], list[str]]:
    """One tick of the registration sensor: the partitions after it, and the clients it
    launched a first sync for."""
    instance = get_instance()
    result = register_clients_sensor(build_sensor_context(instance=instance))
    launched = [c for r in getattr(result, "run_requests", None) or []
                for c in batch_clients(r.run_config)]
    return sorted(instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME)), launched


def scheduled() -> list[str]:
    """The clients one tick of the hourly schedule syncs (every partition offered to it)."""
    instance = get_instance()
    schedule = {s.name: s for s in build_sync_schedules()}["stripe_sync_hourly"]
    context = build_schedule_context(instance=instance, scheduled_execution_time=TICK,
                                     repository_def=defs.get_repository_def())
    runs = [r for r in schedule.evaluate_tick(context).run_requests or []
            if isinstance(r, RunRequest)]
    return sorted(c for r in runs for c in batch_clients(r.run_config))


def page_state(client: str) -> str | None:
    """The state the report page's client list shows for `client` (None: not listed)."""
    with TestClient(create_app(), base_url="http://127.0.0.1:8050") as web:
        page = web.get("/").text
    row = page.split(f'data-client="{client}"', 1)
    if len(row) < 2:
        return None
    state = row[1].split('<span class="state', 1)[1]
    return state.split(">", 1)[1].split("<", 1)[0]


def synced_by_all() -> tuple[list[str], str, int]:
    done = run_cli("sync", "--all", timeout=300)
    # Each client synced: a run, or checked with nothing new (no run needed).
    names = sorted(line.split(":", 1)[0] for line in done.stdout.splitlines()
                   if ": synced (Dagster run" in line or ": checked: nothing new" in line)
    return names, done.stderr, done.returncode


@pytest.fixture
def world(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", **SMALL), AccountSpec("globex", **SMALL)])
    globex = server.world.accounts["globex"]
    assert run_cli("connect", "globex", stdin=globex.secret_key + "\n").returncode == 0
    return server


@pytest.mark.parametrize("entry", ["{max_requests_per_second: 20}", "{key_env: ACME_KEY}"],
                         ids=["connected", "environment"])
def test_a_declared_then_disconnected_client_is_out_everywhere_until_connected(
        world, home, monkeypatch, entry):
    acme_key = world.world.accounts["acme"].secret_key
    declare(home, f"  acme: {entry}\n")
    if "key_env" in entry:
        monkeypatch.setenv("ACME_KEY", acme_key)  # the CLI's processes inherit it
    else:
        assert run_cli("connect", "acme", stdin=acme_key + "\n").returncode == 0
    assert sensor_registers()[0] == ["acme", "globex"]
    assert run_cli("sync", "acme").returncode == 0
    gone = run_cli("disconnect", "acme")
    assert gone.returncode == 0, gone.stderr

    # The sensor does not bring the partition back, nor launch a first sync.
    assert sensor_registers() == (["globex"], [])
    # A partition left over (an older version re-added it): the schedule passes it over.
    get_instance().add_dynamic_partitions(CLIENTS_PARTITION_NAME, ["acme"])
    assert scheduled() == ["globex"]
    names, stderr, code = synced_by_all()
    assert (names, code) == (["globex"], 0)
    assert "acme skipped: disconnected (declared in clients.yaml" in stderr
    assert page_state("acme") == "key removed"  # the console's words for disconnected
    listing = run_cli("clients").stdout
    assert "acme: disconnected (declared in clients.yaml, but not synced until connected " \
           "again); run `stripe-reports connect acme` to resume." in listing
    refused = run_cli("sync", "acme")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        "error: acme is not synced: disconnected (declared in clients.yaml, but not synced "
        "until connected again); run `stripe-reports connect acme` to resume."]

    # `connect` again: all four include it.
    assert run_cli("connect", "acme", stdin=acme_key + "\n").returncode == 0
    unregister_client(get_instance(), "acme")  # so the sensor has it to add back
    assert sensor_registers() == (["acme", "globex"], ["acme"])
    assert scheduled() == ["acme", "globex"]
    names, stderr, code = synced_by_all()
    assert (names, code) == (["acme", "globex"], 0), stderr
    assert page_state("acme") == "up to date"


def stored_secrets() -> str:
    """Every row of the connection store, with each encrypted key decrypted: what a thief of
    the store and its master key would read."""
    path = make_url(load_settings().connections_url).database
    cipher = KeyCipher.from_settings(load_settings())
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for t in ("stripe_connections", "credential_checks")
                for r in db.execute(f"SELECT * FROM {t}")]
    for row in rows:
        if row.get("encrypted_key"):
            row["encrypted_key"] = cipher.decrypt(row["encrypted_key"])
    return json.dumps(rows, default=str)


def test_a_key_from_the_environment_is_used_never_stored_and_withdrawn_stops_the_client(
        home, sandbox_factory, monkeypatch):
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    acme = server.world.accounts["acme"]
    declare(home, "  acme: {key_env: ACME_KEY}\n")
    monkeypatch.setenv("ACME_KEY", acme.secret_key)
    first = run_cli("sync", "acme")
    assert first.returncode == 0, first.stderr
    stored = ConnectionStore.from_settings().get("acme")
    assert (stored.state.value, stored.account_id) == ("connected", acme.account_id)
    assert acme.secret_key not in stored_secrets()
    assert acme.secret_key[-4:] not in stored_secrets()  # not even the masked key

    # Withdrawn: the variable unset and the entry removed.
    monkeypatch.delenv("ACME_KEY")
    (Path(home).parent / "clients.yaml").write_text("clients: {}\n")
    refused = run_cli("sync", "acme")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: acme is not synced: its key came from an environment variable that "
        "clients.yaml no longer declares (it was never stored): run `stripe-reports connect "
        "acme`."]
    get_instance().add_dynamic_partitions(CLIENTS_PARTITION_NAME, ["acme"])
    assert scheduled() == []
    assert sensor_registers()[1] == []
    assert acme.secret_key not in stored_secrets()


def test_a_key_an_older_version_copied_into_the_store_is_dropped_on_first_use(
        home, sandbox_factory, monkeypatch):
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    acme = server.world.accounts["acme"]
    # What the older version did at an environment client's first sync: store the key.
    with ConnectionStore.from_settings() as store:
        store.save_connection("acme", secret_key=acme.secret_key, account_id=acme.account_id,
                              livemode=False)
    assert acme.secret_key in stored_secrets()
    declare(home, "  acme: {key_env: ACME_KEY}\n")
    monkeypatch.setenv("ACME_KEY", acme.secret_key)

    assert run_cli("sync", "acme").returncode == 0
    assert acme.secret_key not in stored_secrets()
    assert ConnectionStore.from_settings().get("acme").state.value == "connected"

    monkeypatch.delenv("ACME_KEY")  # withdrawn, the entry still there
    refused = run_cli("sync", "acme")
    assert refused.returncode == 1
    assert "ACME_KEY, which is not set in this environment" in refused.stderr
    assert "stripe-reports connect acme" in refused.stderr
    assert scheduled() == []


def test_clients_lists_declared_clients_before_their_first_sync_and_the_files_problems(
        home, sandbox_factory, monkeypatch):
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    acme = server.world.accounts["acme"]
    declare(home, "  acme: {key_env: ACME_KEY}\n  beta: {max_requests_per_second: 5}\n"
                  "  gamma: {schedule: every hour}\n")
    monkeypatch.setenv("ACME_KEY", acme.secret_key)

    table = run_cli("clients")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[1:4]}
    assert "waiting for first sync" in rows["acme"] and "sk_test_…" + acme.secret_key[-4:] \
        in rows["acme"]
    assert "no key" in rows["beta"] and "left out" in rows["gamma"]
    assert "gamma' is left out: schedule 'every hour' is not a valid cron" in table.stdout
    listed = {c["client_id"]: c for c in json.loads(run_cli("clients", "--json").stdout)}
    assert (listed["acme"]["state"], listed["acme"]["active"]) == ("waiting for first sync",
                                                                    True)
    assert listed["acme"]["key_source"] == "environment"
    assert (listed["beta"]["state"], listed["beta"]["active"]) == ("no key", False)
    assert "stripe-reports connect beta" in listed["beta"]["why"]

    # The key is rolled in the environment: `clients` shows the new key's last four.
    assert run_cli("sync", "acme").returncode == 0
    rolled = "sk_test_" + "RolledKeyBody" * 2 + "WXYZ"
    server.world.keys[rolled] = KeyInfo(acme, "secret")
    monkeypatch.setenv("ACME_KEY", rolled)
    row = next(line for line in run_cli("clients").stdout.splitlines()
               if line.startswith("acme "))
    assert "connected" in row and "sk_test_…WXYZ" in row
    assert acme.secret_key[-4:] not in row
