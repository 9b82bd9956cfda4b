"""The daily credential watch and the alerts a credential failure raises, on real Dagster runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    SensorEvaluationContext,
)
from dagster._core.remote_origin import RegisteredCodeLocationOrigin

from engine.connection_store import ConnectionStore
from engine.keys import mask_key
from pipelines.alerts import SENSOR_NAME, credential_alert_sensor
from pipelines.credential_watch import CHECK_CRON, CHECK_JOB_NAME, CHECK_SCHEDULE_NAME
from pipelines.definitions import defs
from sandbox import AccountSpec

SMALL = {"charges": 10, "customers": 4, "subscriptions": 2, "products": 2, "history_days": 40}
ALERT_PREFIX = "Stripe credentials failed for client"


@dataclass
class Webhook:
    url: str
    received: list[dict] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A real HTTP endpoint on 127.0.0.1 that records the JSON posted to it."""
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append(json.loads(body))
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T0KEN-in-the-path"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


@pytest.fixture
def world(home, sandbox_factory, monkeypatch):
    """acme (healthy), globex (key revoked since), initech (unreachable), oldco (disconnected)."""
    server = sandbox_factory([AccountSpec(name, **SMALL)
                              for name in ("acme", "globex", "initech", "oldco")])
    with ConnectionStore.from_settings() as store:
        for name, account in server.world.accounts.items():
            store.save_connection(name, secret_key=account.secret_key,
                                  account_id=account.account_id, livemode=False)
        store.disconnect("oldco")
    server.world.revoke_key("globex")
    # An outage that outlasts the (shortened) per-request retry budget.
    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "1")
    server.inject_faults("initech", 10_000, kind="drop")
    return server


def stored(client_id: str):
    with ConnectionStore.from_settings() as store:
        return store.get(client_id)


def log_messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)
            if entry.dagster_event is None]


def alert_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if ALERT_PREFIX in line]


class SensorTicks:
    """The alert sensor evaluated tick by tick as the daemon would, from now on."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance = instance
        self.cursor = self._evaluate(None).cursor  # no failure yet: the first tick reads none

    def _evaluate(self, cursor: str | None):
        # As in `dagster dev`: the sensor lives in a code location, which CLI runs have not.
        context = SensorEvaluationContext(
            instance_ref=None, last_tick_completion_time=None, last_run_key=None, cursor=cursor,
            repository_name="__repository__", repository_def=defs.get_repository_def(),
            instance=self.instance, sensor_name=SENSOR_NAME,
            code_location_origin=RegisteredCodeLocationOrigin("stripe-reports"))
        return credential_alert_sensor.evaluate_tick(context)

    def tick(self) -> int:
        """Evaluate once; the number of failed runs the sensor read."""
        data = self._evaluate(self.cursor)
        self.cursor = data.cursor
        return int(data.skip_message.split()[0])


def run_check_job(instance: DagsterInstance):
    return defs.get_job_def(CHECK_JOB_NAME).execute_in_process(
        instance=instance, raise_on_error=False)


def test_the_daily_check_records_every_client_and_logs_one_line_each(world):
    initech_before, oldco_before = stored("initech"), stored("oldco")
    instance = DagsterInstance.ephemeral()

    result = run_check_job(instance)

    assert not result.success  # a dead key makes the watch run fail, naming the client
    messages = log_messages(instance, result.run_id)
    per_client = [m for m in messages if m.split(":")[0] in world.world.accounts]
    assert [m.split(":")[0] for m in per_client] == ["acme", "globex", "initech"]
    acme = world.world.accounts["acme"]
    assert per_client[0] == f"acme: ok (account {acme.account_id}, key {mask_key(acme.secret_key)})"
    globex = stored("globex")
    assert per_client[1] == f"globex: FAILED (key {globex.masked_key}): {globex.reason}"
    assert per_client[2].startswith(
        "initech: not checked: Stripe could not be reached for client 'initech' (no response)")
    assert "Credential check: 1 ok, 1 failed, 1 not checked (Stripe unreachable)." in messages
    for account in world.world.accounts.values():
        assert not [m for m in messages if account.secret_key in m]

    assert globex.state.value == "failed" and globex.last_check_ok is False
    assert globex.reason.startswith(f"Stripe rejected the key {globex.masked_key} for client "
                                    "'globex'")
    assert stored("acme").state.value == "connected" and stored("acme").last_check_ok
    assert stored("initech") == initech_before  # Stripe unreachable: no verdict on the key
    assert stored("oldco") == oldco_before  # disconnected: not checked at all
    failure = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_FAILURE)[0]
    data = failure.dagster_event.step_failure_data.user_failure_data
    assert data.metadata["failed_clients"].value == "globex"
    assert data.description.splitlines()[:2] == [
        "1 client(s) need a new Stripe key:", f"globex: {globex.reason}"]


def test_a_failed_watch_run_alerts_once_per_failed_client(world, webhook, monkeypatch, capfd):
    world.world.revoke_key("acme")
    monkeypatch.setenv("STRIPE_REPORTS_ALERT_WEBHOOK", webhook.url)
    instance = DagsterInstance.ephemeral()
    sensor = SensorTicks(instance)
    run_check_job(instance)
    capfd.readouterr()

    assert sensor.tick() == 1

    lines = alert_lines(capfd.readouterr().err)
    assert len(lines) == 2
    for client_id, line in zip(("acme", "globex"), lines, strict=True):
        connection = stored(client_id)
        assert (f"{ALERT_PREFIX} '{client_id}' (key {connection.masked_key}): "
                f"{connection.reason} To fix: 1. {connection.steps[0]} 2. ") in line
    assert webhook.received == [
        {"client": c.client_id, "message": c.reason, "steps": list(c.steps),
         "masked_key": c.masked_key}
        for c in (stored("acme"), stored("globex"))
    ]
    assert sensor.tick() == 0 and len(webhook.received) == 2  # each run alerts once


def test_a_cli_sync_failing_on_a_revoked_key_alerts_with_the_stored_reason(
        world, webhook, monkeypatch, capfd):
    from apps.launch import materialize_client
    from pipelines.instance import get_instance

    monkeypatch.setenv("STRIPE_REPORTS_ALERT_WEBHOOK", webhook.url)
    sensor = SensorTicks(get_instance())
    outcome = materialize_client("globex")  # what `stripe-reports sync` runs, outside any
    assert not outcome.success              # code location
    capfd.readouterr()

    assert sensor.tick() == 1

    globex = stored("globex")
    assert globex.state.value == "failed"
    assert outcome.message.splitlines()[0] == globex.reason
    lines = alert_lines(capfd.readouterr().err)
    assert len(lines) == 1 and f"'globex' (key {globex.masked_key}): {globex.reason}" in lines[0]
    assert webhook.received == [{"client": "globex", "message": globex.reason,
                                 "steps": list(globex.steps), "masked_key": globex.masked_key}]


def test_a_sync_stopped_by_the_network_alerts_nobody_and_fails_no_key(
        world, webhook, monkeypatch, capfd):
    from apps.launch import materialize_client
    from pipelines.instance import get_instance

    monkeypatch.setenv("STRIPE_REPORTS_ALERT_WEBHOOK", webhook.url)
    sensor = SensorTicks(get_instance())
    before = stored("initech")
    outcome = materialize_client("initech")  # its requests are dropped

    assert not outcome.success
    instance = get_instance()
    failure = instance.all_logs(outcome.run_id, of_type=DagsterEventType.STEP_FAILURE)[0] \
        .dagster_event.step_failure_data.user_failure_data
    assert "Stripe could not be reached for client 'initech'" in failure.description
    assert "Stripe could not be reached for client 'initech'" in outcome.message
    assert stored("initech") == before
    capfd.readouterr()
    assert sensor.tick() == 1
    assert alert_lines(capfd.readouterr().err) == [] and webhook.received == []


def test_a_failing_webhook_is_logged_without_its_url_and_never_raised(
        world, webhook, monkeypatch, capfd):
    webhook.status = 500
    monkeypatch.setenv("STRIPE_REPORTS_ALERT_WEBHOOK", webhook.url)
    instance = DagsterInstance.ephemeral()
    sensor = SensorTicks(instance)
    run_check_job(instance)
    capfd.readouterr()

    assert sensor.tick() == 1

    err = capfd.readouterr().err
    assert len(alert_lines(err)) == 1 and len(webhook.received) == 1
    assert "globex: the alert could not be sent to the webhook at 127.0.0.1 (HTTP 500)." in err
    assert "T0KEN" not in err

    monkeypatch.setenv("STRIPE_REPORTS_ALERT_WEBHOOK", "http://127.0.0.1:9/hooks/T0KEN")
    run_check_job(instance)
    capfd.readouterr()
    assert sensor.tick() == 1
    err = capfd.readouterr().err
    assert len(alert_lines(err)) == 1
    assert "globex: the alert could not be sent to the webhook at 127.0.0.1 (ConnectError" in err
    assert "T0KEN" not in err


def test_a_client_reconnected_before_the_sensor_runs_gets_no_alert(world, capfd):
    instance = DagsterInstance.ephemeral()
    sensor = SensorTicks(instance)
    run_check_job(instance)
    with ConnectionStore.from_settings() as store:
        store.record_check("globex", ok=True)  # fixed meanwhile
    capfd.readouterr()

    assert sensor.tick() == 1

    err = capfd.readouterr().err
    assert alert_lines(err) == [] and "globex: no alert, the connection is connected now." in err


def test_failures_from_before_the_sensor_first_ran_are_alerted_once(
        world, webhook, monkeypatch, capfd):
    """`stripe-reports demo` fails a client before any daemon runs; `dagster dev` comes later."""
    from apps.launch import materialize_client
    from pipelines.instance import get_instance

    monkeypatch.setenv("STRIPE_REPORTS_ALERT_WEBHOOK", webhook.url)
    assert not materialize_client("globex").success
    instance = get_instance()
    capfd.readouterr()

    first = SensorTicks(instance)  # switched on now: its first tick looks back a day

    globex = stored("globex")
    assert [a["client"] for a in webhook.received] == ["globex"]
    assert f"'globex' (key {globex.masked_key}): {globex.reason}" in capfd.readouterr().err
    assert first.tick() == 0 and len(webhook.received) == 1  # each failure alerts once


def test_a_sensor_first_switched_on_skips_failures_older_than_its_look_back(
        world, webhook, monkeypatch):
    from datetime import timedelta

    from apps.launch import materialize_client
    from pipelines import alerts
    from pipelines.instance import get_instance

    monkeypatch.setenv("STRIPE_REPORTS_ALERT_WEBHOOK", webhook.url)
    assert not materialize_client("globex").success
    monkeypatch.setattr(alerts, "LOOK_BACK", timedelta(0))

    sensor = SensorTicks(get_instance())

    assert webhook.received == [] and sensor.tick() == 0


def test_the_watch_is_scheduled_daily_and_the_sensor_is_on():
    repository = defs.get_repository_def()
    schedule = repository.get_schedule_def(CHECK_SCHEDULE_NAME)
    assert schedule.cron_schedule == CHECK_CRON == "0 6 * * *"
    assert schedule.job_name == CHECK_JOB_NAME
    assert schedule.default_status.value == "RUNNING"
    assert repository.get_sensor_def(SENSOR_NAME).default_status.value == "RUNNING"
