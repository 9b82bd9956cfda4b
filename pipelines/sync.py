"""Syncing clients through Dagster from the CLI, the web page and the demo.

Each client's sync is a run of the job `stripe_sync_job` for the client's partition,
executed in its own process against the shared instance, so every run shows in the
Dagster UI beside the scheduled ones, tagged with who launched it.
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
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, RunConfig

from assets.reporting import REPORTING_TABLES
from assets.reporting.assets import reporting_asset_key
from assets.stripe_assets import BALANCE_KEY, SyncConfig, stream_asset_key
from engine.progress import ProgressSink, progress_sink
from engine.settings import load_settings
from engine.streams import resolve_streams
from engine.user_errors import explain
from pipelines.definitions import defs
from pipelines.instance import get_instance, register_clients
from pipelines.jobs import SYNC_JOB_NAME, launcher_tags
from pipelines.run_health import fail_dead_runs, this_process_tags

# Set by the report page for the CLI it spawns, so its runs say `web` (never shown in --help).
LAUNCHER_ENV = "STRIPE_REPORTS_LAUNCHED_BY"
QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}
# What the UI groups a job's runs by; runs executed here have no code location of their own.
REPOSITORY_LABEL = "__repository__@stripe_reports"
# The instance's kept database connections: renewed hourly; more open while threads write.
POOL_RECYCLE_SECONDS = 3600
POOL_OVERFLOW = 20


@dataclass
class ClientSyncOutcome:
    client_id: str
    success: bool
    run_id: str | None = None
    # asset key -> its materialization metadata (rows_inserted, api_requests, ...)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    message: str | None = None


def default_launcher() -> str:
    """`web` in a sync the report page started, else `cli`."""
    return os.environ.get(LAUNCHER_ENV) or "cli"


def asset_selection(streams: list[str] | None) -> list | None:
    """The job's assets for the chosen streams (None: all): each stream with its child
    tables, the balance (the credential check hangs on it) and every reporting table."""
    if not streams:
        return None
    keys = [BALANCE_KEY]
    for spec in resolve_streams(streams):
        keys += [stream_asset_key(spec), *(AssetKey(["stripe", c.table]) for c in spec.children)]
    # The reporting tables are one multi-asset: rebuild all of them, never a part.
    return keys + [reporting_asset_key(table) for table in REPORTING_TABLES]


def _failure_text(result: Any) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                return data.user_failure_data.description
            # Dagster wraps the real error; the innermost cause says what happened.
            error = data.error
            while error is not None and error.cause is not None:
                error = error.cause
            return error.message.strip() if error else "The sync failed."
    return "The sync failed."


def run_sync_job(client_id: str, instance: Any, *, full_refresh: bool = False,
                 streams: list[str] | None = None, launched_by: str = "cli",
                 tags: dict[str, str] | None = None) -> Any:
    """One run of `stripe_sync_job` for the client's partition, in this process."""
    config = SyncConfig(full_refresh=full_refresh, streams=list(streams or []))
    return defs.resolve_job_def(SYNC_JOB_NAME).execute_in_process(
        run_config=RunConfig(ops={"stripe_sync": config}, loggers=QUIET_LOGGERS),
        instance=instance,
        partition_key=client_id,
        asset_selection=asset_selection(streams),
        tags={"client": client_id, ".dagster/repository": REPOSITORY_LABEL,
              **launcher_tags(launched_by), **(tags or {})},
        raise_on_error=False,
    )


def _outcome(client_id: str, result: Any) -> ClientSyncOutcome:
    assets = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        assets[materialization.asset_key.to_user_string()] = {
            key: value.value for key, value in materialization.metadata.items()
        }
    return ClientSyncOutcome(
        client_id=client_id, success=result.success, run_id=result.run_id, assets=assets,
        message=None if result.success else _failure_text(result),
    )


def prepare_instance(instance: Any, client_ids: list[str]) -> None:
    """Before syncing: dead runs marked failed (they must not hold a place in the queue), and
    every client a partition. Once per process start, not once per client.

    The instance also keeps its database connections for the process's many writes (a
    client's run writes ~100 events): Dagster's PostgreSQL storage otherwise opens one for
    each, 48 ms an event against 3 ms kept (load 8). It is the method Dagster's webserver
    uses; on SQLite it does nothing."""
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS,
                                    max_overflow=POOL_OVERFLOW)
    fail_dead_runs(instance)
    register_clients(instance, client_ids)


def materialize_client(
    client_id: str,
    full_refresh: bool = False,
    streams: list[str] | None = None,
    *,
    launched_by: str | None = None,
    progress: ProgressSink | None = None,
    instance: Any = None,
    tags: dict[str, str] | None = None,
) -> ClientSyncOutcome:
    """Run one client's sync in this process, recorded in the Dagster instance: the settings'
    own, or `instance`, which the caller (a batch run) has readied with prepare_instance."""
    try:
        with progress_sink(progress):
            if instance is None:
                instance = get_instance()
                prepare_instance(instance, [client_id])
            result = run_sync_job(client_id, instance, full_refresh=full_refresh,
                                  streams=streams, launched_by=launched_by or default_launcher(),
                                  tags={**this_process_tags(), **(tags or {})})
    except Exception as error:  # a full disk, a damaged instance: one line, not a traceback
        problem = explain(error)
        if problem is None:
            raise
        return ClientSyncOutcome(client_id, False, message=problem.message)
    return _outcome(client_id, result)


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
        [sys.executable, "-m", "pipelines.cli", "sync", client_id],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, LAUNCHER_ENV: "web"},
    )
