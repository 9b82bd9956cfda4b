"""Syncs the apps start (the CLI, the demo, the report page), each a run of `stripe_sync_job`.

The apps alone load the one Definitions; they hand its sync job to pipelines.client_runs,
which runs it for a client in this process. Several clients sync side by side in worker
processes; the page starts a CLI sync in the background.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from dagster import JobDefinition

from engine.progress import ProgressSink
from engine.settings import LAUNCHER_ENV, load_settings
from pipelines import client_runs
from pipelines.client_runs import ClientSyncOutcome
from pipelines.definitions import defs
from pipelines.jobs import SYNC_JOB_NAME


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
) -> ClientSyncOutcome:
    """One client's sync in this process, recorded in the settings' Dagster instance."""
    return client_runs.materialize_client(
        client_id, full_refresh, streams, job=sync_job(),
        launched_by=launched_by or default_launcher(), progress=progress)


def _materialize_in_worker(client_id: str, full_refresh: bool, streams: list[str] | None,
                           updates: Any, launched_by: str) -> ClientSyncOutcome:
    """materialize_client in a pool worker, its progress sent back over `updates`."""
    sink = (lambda *update: updates.put(update)) if updates is not None else None
    return materialize_client(client_id, full_refresh, streams, launched_by=launched_by,
                              progress=sink)


def sync_clients(
    client_ids: list[str],
    *,
    full_refresh: bool = False,
    streams: list[str] | None = None,
    parallel: int = 4,
    progress: ProgressSink | None = None,
    on_done: Callable[[ClientSyncOutcome], None] | None = None,
    launched_by: str | None = None,
) -> list[ClientSyncOutcome]:
    """Sync clients, each in a run of its own; outcomes in the given order. One client (or
    `parallel` 1) syncs in this process: worker processes would only add their start-up."""
    launched_by = launched_by or default_launcher()
    if len(client_ids) == 1 or parallel == 1:
        outcomes = []
        for client in client_ids:
            outcomes.append(materialize_client(client, full_refresh, streams,
                                               launched_by=launched_by, progress=progress))
            if on_done:
                on_done(outcomes[-1])
        return outcomes
    return _sync_in_workers(client_ids, full_refresh, streams, parallel, progress, on_done,
                            launched_by)


def _sync_in_workers(client_ids: list[str], full_refresh: bool, streams: list[str] | None,
                     parallel: int, progress: ProgressSink | None,
                     on_done: Callable[[ClientSyncOutcome], None] | None,
                     launched_by: str) -> list[ClientSyncOutcome]:
    """Clients side by side in `parallel` worker processes, each reused for many clients."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        updates = manager.Queue()
        stop = threading.Event()
        drawer = threading.Thread(target=_drain, args=(updates, progress, stop), daemon=True)
        drawer.start()
        try:
            with ProcessPoolExecutor(max_workers=min(parallel, len(client_ids)),
                                     mp_context=context) as pool:
                futures = {
                    client: pool.submit(_materialize_in_worker, client, full_refresh, streams,
                                        updates if progress else None, launched_by)
                    for client in client_ids
                }
                outcomes = []
                for client, future in futures.items():
                    try:
                        outcome = future.result()
                    except Exception as error:  # the child itself died
                        outcome = ClientSyncOutcome(client, False, message=str(error))
                    outcomes.append(outcome)
                    if on_done:
                        on_done(outcome)
        finally:
            stop.set()
            drawer.join(timeout=2)
    return outcomes


def _drain(updates: Any, progress: ProgressSink | None, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            update = updates.get(timeout=0.1)
        except (queue.Empty, EOFError, OSError):
            continue
        if progress:
            progress(*update)


def start_background_sync(client_id: str) -> None:
    """Start a sync for one client without waiting (the report page's reconnect flow)."""
    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    log = open(settings.home / f"sync-{client_id}.log", "ab")  # noqa: SIM115 (child keeps it)
    subprocess.Popen(
        [sys.executable, "-m", "apps.cli", "sync", client_id],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, LAUNCHER_ENV: "web"},
    )
