"""The Dagster daemon runs a client's schedule for real: sensor, tick, queue, run, rows."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from assets.client_health import BALANCE_KEY
from assets.partitions import CLIENTS_PARTITION_NAME
from engine.warehouse_factory import warehouse_from_settings
from pipelines.batches import BATCH_JOB_NAME, BATCH_TAG
from pipelines.instance import ensure_dagster_home, get_instance
from pipelines.jobs import SYNC_JOB_NAME
from sandbox import AccountSpec

ROOT = Path(__file__).resolve().parent.parent
DAGSTER = str(ROOT / ".venv" / "bin" / "dagster")
DAEMON = str(ROOT / ".venv" / "bin" / "dagster-daemon")
WORKSPACE = ["-w", "workspace_config/workspace.yaml"]
SCHEDULE = "stripe_sync_x_x_x_x_x"  # the name schedules.py gives the cron "* * * * *"
SENSOR = "register_clients"
# A tick comes at the top of each minute; the first one may miss the sensor's partition by a hair,
# and the schedule's run waits for the sensor's (one run per client at a time).
RUN_DEADLINE_SECONDS = 180
LAUNCHED_BY = "stripe_reports/launched_by"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def _tail(log: Path, lines: int = 60) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no daemon log)"
    return "\n".join(text.splitlines()[-lines:])


def _errors(instance: DagsterInstance, run: DagsterRun) -> str:
    """The run's error-level events with their errors, so a failed run says why."""
    lines = []
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if entry.level < logging.ERROR and not (event and event.is_failure):
            continue
        error = getattr(event.event_specific_data, "error", None) if event else None
        lines.append(entry.message + (f" {error.message.strip()}" if error else ""))
    return "\n".join(lines)


def _acme_runs(instance: DagsterInstance) -> list[DagsterRun]:
    """acme's sync runs, and the scheduled batch runs: a batch that finds nothing new for
    acme checks it without a sync run of its own (pipelines/batch_checks.py)."""
    syncs = instance.get_runs(
        filters=RunsFilter(job_name=SYNC_JOB_NAME, tags={"dagster/partition": "acme"}))
    batches = instance.get_runs(
        filters=RunsFilter(job_name=BATCH_JOB_NAME, tags={"dagster/schedule_name": SCHEDULE}))
    return [*syncs, *batches]


def _checked_by(instance: DagsterInstance, run: DagsterRun) -> bool:
    """Whether `run` synced acme, or (a batch run) checked it: its stripe/balance observation
    names the batch, or acme's sync run carries the batch's tag."""
    if run.job_name == SYNC_JOB_NAME:
        return True
    if instance.get_runs(filters=RunsFilter(job_name=SYNC_JOB_NAME,
                                            tags={BATCH_TAG: run.run_id})):
        return True
    for record in instance.fetch_observations(BALANCE_KEY, limit=20).records:
        observation = record.asset_observation
        batch = observation.metadata.get("batch_run")
        if observation.partition == "acme" and batch is not None and batch.value == run.run_id:
            return True
    return False


def _wait_for_finished_runs(instance: DagsterInstance, daemon: subprocess.Popen,
                            log: Path) -> dict[str, DagsterRun]:
    """The first finished run of each launcher we expect: the sensor, then the schedule."""
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        assert daemon.poll() is None, f"dagster-daemon exited ({daemon.returncode}):\n{_tail(log)}"
        finished = {r.tags.get(LAUNCHED_BY): r for r in reversed(_acme_runs(instance))
                    if r.status in FINISHED}
        if {"sensor", "schedule"} <= set(finished):
            return finished
        time.sleep(1)
    seen = [(r.run_id[:8], r.status.value, r.tags.get(LAUNCHED_BY)) for r in _acme_runs(instance)]
    partitions = instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME)
    pytest.fail(f"No finished {SYNC_JOB_NAME} runs for acme from both the sensor and the "
                f"schedule after {RUN_DEADLINE_SECONDS}s (runs: {seen}, partitions: "
                f"{partitions}). Daemon log tail:\n{_tail(log)}")


def _stop(daemon: subprocess.Popen) -> None:
    daemon.terminate()
    try:
        daemon.wait(timeout=20)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(timeout=10)


@pytest.mark.slow
def test_the_daemon_runs_a_clients_every_minute_schedule_end_to_end(
        home, sandbox_factory, monkeypatch, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=200)])
    key = server.world.accounts["acme"].secret_key
    (Path(home).parent / "clients.yaml").write_text(
        'clients:\n  acme: {key_env: ACME_KEY, schedule: "* * * * *"}\n')
    monkeypatch.setenv("ACME_KEY", key)  # the daemon and its run workers inherit it
    ensure_dagster_home()
    env = dict(os.environ)

    # Nothing is switched on by hand: the schedule and the sensors run by default.
    log = tmp_path / "daemon.log"
    started = time.monotonic()
    with log.open("w") as out:
        daemon = subprocess.Popen([DAEMON, "run", *WORKSPACE], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        instance = get_instance()
        runs = _wait_for_finished_runs(instance, daemon, log)
        elapsed = time.monotonic() - started
        for run in runs.values():
            assert run.status == DagsterRunStatus.SUCCESS, (
                f"run {run.run_id} ended {run.status.value}:\n{_errors(instance, run)}\n"
                f"Daemon log tail:\n{_tail(log)}")
    finally:
        _stop(daemon)

    # The sensor registered the client and synced it at once; the schedule's tick came next.
    assert instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME) == ["acme"]
    assert runs["sensor"].tags.get("dagster/sensor_name") == SENSOR, runs["sensor"].tags
    assert runs["schedule"].tags.get("dagster/schedule_name") == SCHEDULE, runs["schedule"].tags
    assert _checked_by(instance, runs["schedule"]), "the scheduled run did not sync or check acme"
    with warehouse_from_settings().reader() as conn:
        rows = conn.execute(
            "SELECT count(*) FROM stripe.charges WHERE client_id = 'acme'").fetchone()[0]
    assert rows == 200
    assert key not in log.read_text(errors="replace"), "the daemon log shows the key in clear"
    run = runs["schedule"]
    print(f"scheduled run {run.run_id[:8]} succeeded {elapsed:.0f}s after the daemon started")
