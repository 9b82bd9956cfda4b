"""Runs whose process died (kill -9, a crash, a reboot) are marked failed, so the queue moves on.

Dagster's own run monitoring asks the run launcher whether a run's worker lives, and the
default launcher (a process per run on this machine) cannot tell; runs executed in the
CLI's own process have no launcher at all. Each run therefore says which process runs it
(its tags, or Dagster's "Started process for run (pid: N)" event), and a run still STARTED
whose process is gone is reported failed: by the `fail_dead_runs` sensor in the daemon,
and by every CLI sync before it launches its own runs.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultRunLauncher,
    RunsFilter,
)

from engine.processes import process_alive
from engine.warehouse_factory import warehouse_from_settings
from pipelines.jobs import SYNC_JOB_NAME

# Hidden tags (Dagster's `.dagster/` prefix, which its UI leaves out of the run list and the
# tags dialog): an operator filters runs by client and launcher, never by process.
PID_TAG = ".dagster/stripe_reports/pid"
HOST_TAG = ".dagster/stripe_reports/host"
# Where runs started before the tags were hidden keep them.
SHOWN_PID_TAG = "stripe_reports/pid"
SHOWN_HOST_TAG = "stripe_reports/host"
PARTITION_TAG = "dagster/partition"
# A process that began this long after its run started cannot be the run's (a reused pid).
START_SLACK_SECONDS = 5.0


def this_process_tags() -> dict[str, str]:
    """Tags for a run executed in this process."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def fail_dead_runs(instance: DagsterInstance) -> list[str]:
    """Report every STARTED run of this machine whose process is gone as failed; their ids."""
    failed = []
    for record in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        run = record.dagster_run
        pid = _run_pid(instance, run.run_id, run.tags)
        if pid is None or not _on_this_host(instance, run.tags):
            continue
        if process_alive(pid, started_before=record.start_time, slack=START_SLACK_SECONDS):
            continue
        message = (f"The process running this sync (pid {pid}) is gone: it was killed or "
                   "crashed. The run is marked failed so other runs can start; the next sync "
                   "resumes from the last rows that landed.")
        instance.report_run_failed(run, message)
        _record_in_warehouse(run, record.start_time, message)
        failed.append(run.run_id)
    return failed


def _record_in_warehouse(run: DagsterRun, started_at: float | None, message: str) -> None:
    """A killed sync is a failed sync for the client's widgets too: figures built before the
    run began turn `stale` (not those of a sync that finished since)."""
    client = run.tags.get(PARTITION_TAG)
    if run.job_name != SYNC_JOB_NAME or not client:
        return
    began = datetime.fromtimestamp(started_at, UTC) if started_at else None
    warehouse_from_settings().record_failure(client, message, failed_at=began)


def _run_pid(instance: DagsterInstance, run_id: str, tags: dict[str, str]) -> int | None:
    pid = tags.get(PID_TAG, tags.get(SHOWN_PID_TAG))
    if pid is not None:
        return int(pid)
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            return int(pid.value)
    return None


def _on_this_host(instance: DagsterInstance, tags: dict[str, str]) -> bool:
    host = tags.get(HOST_TAG, tags.get(SHOWN_HOST_TAG))
    if host is not None:
        return host == socket.gethostname()
    # Launched by the daemon: the default launcher starts runs on this machine.
    return isinstance(instance.run_launcher, DefaultRunLauncher)
