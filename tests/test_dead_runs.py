"""A sync killed with kill -9 leaves its Dagster run STARTED; it must be marked failed
within a minute, or it holds a place in the run queue and stalls every client's schedule."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from dagster import DagsterRunStatus, build_sensor_context

from pipelines.instance import get_instance
from pipelines.sensors import fail_dead_runs_sensor
from reports.widgets import run_widget
from sandbox import AccountSpec
from tests.test_credentials import CLI, run_cli


def _started_run(instance, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        if runs and runs[0].status == DagsterRunStatus.STARTED:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError("the sync's run never started")


def test_a_killed_cli_sync_is_marked_failed_and_the_next_sync_resumes(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", charges=3000)])
    assert run_cli("connect", "acme", stdin=server.world.accounts["acme"].secret_key
                   ).returncode == 0
    assert run_cli("sync", "acme").returncode == 0
    assert run_widget("acme", "gross_volume").state == "ok"
    server.latency_ms = 150  # a full listing of seconds: killed halfway
    sync = subprocess.Popen([str(CLI), "sync", "acme", "--full-refresh"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy(), cwd=home, start_new_session=True)
    instance = get_instance()
    run = _started_run(instance)
    os.killpg(sync.pid, signal.SIGKILL)
    sync.wait(timeout=30)
    time.sleep(0.5)
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED

    fail_dead_runs_sensor(build_sensor_context(instance=instance))

    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    # The figures from before the killed sync are not shown as current.
    widget = run_widget("acme", "gross_volume")
    assert widget.state == "stale" and "is gone" in widget.message, widget
    server.latency_ms = 0
    assert run_cli("sync", "acme").returncode == 0
    assert run_widget("acme", "gross_volume").state == "ok"


def test_a_live_sync_is_left_running(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", charges=3000)], latency_ms=40)
    assert run_cli("connect", "acme", stdin=server.world.accounts["acme"].secret_key
                   ).returncode == 0
    sync = subprocess.Popen([str(CLI), "sync", "acme"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy(), cwd=home)
    instance = get_instance()
    run = _started_run(instance)

    fail_dead_runs_sensor(build_sensor_context(instance=instance))

    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
    server.latency_ms = 0
    assert sync.wait(timeout=180) == 0
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS


def test_a_daemon_launched_run_whose_worker_died_is_marked_failed(home):
    """Runs the daemon launches carry no tags of ours: their process is the one Dagster's
    own "Started process for run (pid: N)" event names."""
    from dagster._core.events import EngineEventData
    from dagster._core.test_utils import create_run_for_test

    from pipelines.run_health import fail_dead_runs

    instance = get_instance()
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        runs = {}
        for name, worker in (("gone", gone), ("alive", alive)):
            run = create_run_for_test(instance, job_name="stripe_sync_job",
                                      status=DagsterRunStatus.STARTED)
            instance.report_engine_event(f"Started process for run (pid: {worker.pid}).", run,
                                         EngineEventData.in_process(worker.pid))
            runs[name] = run.run_id

        assert fail_dead_runs(instance) == [runs["gone"]]
        assert instance.get_run_by_id(runs["gone"]).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(runs["alive"]).status == DagsterRunStatus.STARTED
    finally:
        alive.kill()
