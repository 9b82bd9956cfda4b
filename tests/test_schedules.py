"""Clients declared in clients.yaml: registered as partitions, scheduled at their cadence."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dagster import RunRequest, RunsFilter, build_schedule_context, build_sensor_context

from apps.launch import materialize_client
from assets.client_health import reconnect_rows
from assets.partitions import CLIENTS_PARTITION_NAME
from engine.connection_store import ConnectionStore
from engine.credentials import connect_client
from pipelines.batches import BATCH_JOB_NAME, batch_clients
from pipelines.definitions import defs
from pipelines.instance import get_instance, unregister_client
from pipelines.schedules import build_sync_schedules
from pipelines.sensors import register_clients_sensor
from reports.widgets.run import RECONNECT, run_widgets
from sandbox import AccountSpec

TICK = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _declare(clients_file: Path, body: str) -> None:
    clients_file.write_text(body)


def test_yaml_clients_get_partitions_and_runs_at_their_own_cadence(home, monkeypatch):
    clients_file = Path(home).parent / "clients.yaml"
    _declare(clients_file, """
clients:
  acme: {key_env: ACME_KEY}
  globex: {key_env: GLOBEX_KEY, schedule: "*/15 * * * *"}
""")
    monkeypatch.setenv("ACME_KEY", "sk_test_acme_key_in_the_environment")
    monkeypatch.setenv("GLOBEX_KEY", "sk_test_globex_key_in_the_environment")
    instance = get_instance()
    first = register_clients_sensor(build_sensor_context(instance=instance))
    assert sorted(instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME)) == ["acme", "globex"]
    # A newly declared client syncs at once, in a run saying the sensor launched it.
    assert sorted(c for r in first.run_requests for c in batch_clients(r.run_config)) == [
        "acme", "globex"]
    assert {r.tags["stripe_reports/launched_by"] for r in first.run_requests} == {"sensor"}

    schedules = {s.name: s for s in build_sync_schedules()}
    assert set(schedules) == {"stripe_sync_hourly", "stripe_sync_x_15_x_x_x_x"}
    for name, expected in (("stripe_sync_hourly", "acme"), ("stripe_sync_x_15_x_x_x_x", "globex")):
        context = build_schedule_context(instance=instance, scheduled_execution_time=TICK,
                                         repository_def=defs.get_repository_def())
        requests = schedules[name].evaluate_tick(context)
        runs = [r for r in requests.run_requests or [] if isinstance(r, RunRequest)]
        assert [batch_clients(r.run_config) for r in runs] == [[expected]]
        assert runs[0].tags["stripe_reports/launched_by"] == "schedule"


def test_a_client_registered_again_gets_a_first_sync_dagster_does_not_skip(home, monkeypatch):
    # Dagster's test helper: a run record as the daemon leaves it (an internal, test-only API).
    from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
    from dagster._core.test_utils import create_run_for_test

    _declare(Path(home).parent / "clients.yaml", "clients:\n  acme: {key_env: ACME_KEY}\n")
    monkeypatch.setenv("ACME_KEY", "sk_test_acme_key_in_the_environment")
    instance = get_instance()
    first = register_clients_sensor(build_sensor_context(instance=instance))
    for request in first.run_requests:  # what the daemon records when it launches them
        create_run_for_test(instance, job_name=BATCH_JOB_NAME, tags={
            RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: "register_clients"})

    # The partition lost without a `disconnect`: acme is still active, so it comes back.
    unregister_client(instance, "acme")
    again = register_clients_sensor(build_sensor_context(instance=instance))

    assert [batch_clients(r.run_config) for r in again.run_requests] == [["acme"]]
    # The daemon skips a request whose run key one of this sensor's runs already has.
    for request in again.run_requests:
        assert not instance.get_runs(RunsFilter(tags={RUN_KEY_TAG: request.run_key}))


def test_a_client_whose_key_is_in_the_environment_syncs_and_is_tracked(
        home, sandbox_factory, monkeypatch):
    server = sandbox_factory([AccountSpec("acme", charges=150)])
    _declare(Path(home).parent / "clients.yaml", "clients:\n  acme: {key_env: ACME_KEY}\n")
    monkeypatch.setenv("ACME_KEY", server.world.accounts["acme"].secret_key)

    outcome = materialize_client("acme")

    assert outcome.success, outcome.message
    assert outcome.assets["stripe/charges"]["rows_inserted"] == 150
    stored = ConnectionStore.from_settings().get("acme")
    assert stored.state.value == "connected" and stored.last_sync_at is not None
    assert stored.account_id == server.world.accounts["acme"].account_id


def test_a_refused_environment_key_shows_reconnect_required_like_a_stored_one(
        home, sandbox_factory, monkeypatch):
    server = sandbox_factory([AccountSpec("acme", charges=40)])
    _declare(Path(home).parent / "clients.yaml", "clients:\n  acme: {key_env: ACME_KEY}\n")
    monkeypatch.setenv("ACME_KEY", server.world.accounts["acme"].secret_key)
    assert materialize_client("acme").success
    # A key stored for a client whose key comes from the environment would be passed over.
    stored = connect_client("acme", server.world.accounts["acme"].secret_key)
    assert any("ACME_KEY" in warning for warning in stored.warnings)

    server.world.revoke_key("acme")
    outcome = materialize_client("acme")

    # The variable wins over a stored key: the steps say to replace it, not to `connect`.
    assert not outcome.success
    assert "environment variable ACME_KEY" in outcome.message
    assert "stripe-reports connect" not in outcome.message
    results = run_widgets("acme")
    assert {r.state for r in results} == {RECONNECT}
    assert any("ACME_KEY" in step for step in results[0].steps)
    with ConnectionStore.from_settings() as store:
        assert [row.client for row in reconnect_rows(store)] == ["acme"]
