"""Syncs the apps start (the CLI, the demo, the report page), each checked first as a batch
run checks its clients, then a run of `stripe_sync_job` if the client had anything new.

The apps alone load the one Definitions; they hand its sync job to pipelines.client_runs,
which runs it for a client in this process. Several clients sync side by side in worker
processes; the page starts a CLI sync in the background.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial

from dagster import JobDefinition

from apps.workers import sync_in_workers
from engine.progress import ProgressSink, progress_sink
from engine.settings import LAUNCHER_ENV, load_settings
from engine.user_errors import explain
from pipelines import client_runs
from pipelines.batch_checks import check_or_run, mark_checked, publish_health
from pipelines.client_runs import ClientSyncOutcome, prepare_instance
from pipelines.definitions import RESOURCES, defs
from pipelines.instance import get_instance
from pipelines.jobs import SYNC_JOB_NAME
from pipelines.sqlite_files import files_kept_open

log = logging.getLogger(__name__)


def default_launcher() -> str:
    """`web` in a sync the report page started, else `cli`."""
    return load_settings().launched_by or "cli"


def sync_job() -> JobDefinition:
    return defs.resolve_job_def(SYNC_JOB_NAME)


def materialize_client(
    client_id: str,
    full_refresh: bool = False,
    streams: list[str] | None = None,
    *,
    launched_by: str | None = None,
    progress: ProgressSink | None = None,
    check_first: bool = False,
) -> ClientSyncOutcome:
    """One client's sync in this process, recorded in the settings' Dagster instance: a run
    of `stripe_sync_job`. With `check_first` (the apps' syncs) and neither a full refresh nor
    chosen streams, the client is first checked as a batch run checks it (_checked_first)."""
    launched_by = launched_by or default_launcher()
    if check_first and not (full_refresh or streams):
        return _checked_first(client_id, launched_by, progress)
    return client_runs.materialize_client(
        client_id, full_refresh, streams, job=sync_job(), launched_by=launched_by,
        progress=progress)


def _checked_first(client_id: str, launched_by: str,
                   progress: ProgressSink | None) -> ClientSyncOutcome:
    """The client checked (pipelines.batch_checks); with nothing new and no build due it is
    recorded as checked in Dagster (an observation of its stripe/balance) without a run,
    whose bookkeeping was ~40 % of a lone no-change sync (benchmarks/README.md). Anything
    else gets its run, which takes over what the check found."""
    stripe, warehouse_resource = RESOURCES["stripe"], RESOURCES["warehouse"]
    try:
        with progress_sink(progress), files_kept_open():
            instance = get_instance()
            prepare_instance(instance, [client_id])
            warehouse = warehouse_resource.open()
            outcome, checked_at = check_or_run(
                client_id, stripe, warehouse, instance,
                lambda: client_runs.materialize_client(
                    client_id, job=sync_job(), launched_by=launched_by, instance=instance),
                log.info, launched={"launched_by": launched_by})
            if checked_at is not None:
                mark_checked(stripe, warehouse, {client_id: checked_at})
                publish_health(instance, stripe, warehouse, [client_id], log.warning)
            return outcome
    except Exception as error:  # a full disk, an unreachable store: one line, no traceback
        problem = explain(error)
        if problem is None:
            raise
        return ClientSyncOutcome(client_id, False, message=problem.message)


def run_client_syncs(
    client_ids: list[str],
    *,
    full_refresh: bool = False,
    streams: list[str] | None = None,
    parallel: int = 4,
    progress: ProgressSink | None = None,
    on_done: Callable[[ClientSyncOutcome], None] | None = None,
    launched_by: str | None = None,
) -> list[ClientSyncOutcome]:
    """Sync clients, each checked first and given a run if it had anything new;
    outcomes in the given order. One client (or
    `parallel` 1) syncs in this process: worker processes would only add their start-up."""
    launched_by = launched_by or default_launcher()
    done = on_done or (lambda _: None)
    if len(client_ids) == 1 or parallel == 1:
        outcomes = []
        for client in client_ids:
            outcomes.append(materialize_client(client, full_refresh, streams,
                                               launched_by=launched_by, progress=progress,
                                               check_first=True))
            done(outcomes[-1])
        return outcomes
    sync_one = partial(materialize_client, full_refresh=full_refresh, streams=streams,
                       launched_by=launched_by, check_first=True)
    by_client = sync_in_workers(client_ids, sync_one, parallel, progress, done)
    return [by_client[client] for client in client_ids]


def start_background_sync(client_id: str) -> None:
    """Start a sync for one client without waiting (the report page's reconnect flow)."""
    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / f"sync-{client_id}.log", "ab") as log:  # the child has its own
        child = subprocess.Popen(
            [sys.executable, "-m", "apps.cli", "sync", client_id],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, LAUNCHER_ENV: "web"},
        )
    # Waited for when it ends: unreaped, each sync would stay a zombie beside the page.
    threading.Thread(target=child.wait, name=f"reap-sync-{client_id}", daemon=True).start()
