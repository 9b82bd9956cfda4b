"""Syncing clients through Dagster from the CLI or the web page.

Each client is materialized in its own process with `dagster.materialize` against
the shared instance, so every run shows in the Dagster UI like a scheduled one.
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

from engine.progress import ProgressSink
from engine.settings import load_settings

BALANCE_STREAM = "balance"


@dataclass
class ClientSyncOutcome:
    client_id: str
    success: bool
    run_id: str | None = None
    # asset key -> its materialization metadata (rows_inserted, api_requests, ...)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    message: str | None = None


def _selection(streams: list[str] | None):
    from dagster import AssetKey, AssetSelection

    if not streams:
        return AssetSelection.groups("stripe").downstream()
    keys = [AssetKey(["stripe", name]) for name in [*streams, BALANCE_STREAM]]
    # The reporting tables are one multi-asset: rebuild all of them, never a part.
    return AssetSelection.assets(*keys).downstream().required_multi_asset_neighbors()


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


def materialize_client(
    client_id: str,
    full_refresh: bool = False,
    streams: list[str] | None = None,
    progress_queue: Any = None,
) -> ClientSyncOutcome:
    """Run one client's sync in this process, recorded in the Dagster instance."""
    from dagster import materialize

    from engine.progress import add_progress_sink
    from pipelines.definitions import ASSETS, RESOURCES
    from pipelines.instance import get_instance, register_clients
    from pipelines.run_health import fail_dead_runs, this_process_tags

    if progress_queue is not None:
        add_progress_sink(lambda *update: progress_queue.put(update))
    instance = get_instance()
    fail_dead_runs(instance)  # a killed sync's run must not hold a place in the queue
    register_clients(instance, [client_id])
    result = materialize(
        ASSETS,
        selection=_selection(streams),
        partition_key=client_id,
        instance=instance,
        resources=RESOURCES,
        tags={
            "client": client_id,
            "stripe_reports/full_refresh": "true" if full_refresh else "false",
            "stripe_reports/launched_by": "cli",
            **this_process_tags(),
        },
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        raise_on_error=False,
    )
    assets = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        assets[materialization.asset_key.to_user_string()] = {
            key: value.value for key, value in materialization.metadata.items()
        }
    return ClientSyncOutcome(
        client_id=client_id,
        success=result.success,
        run_id=result.run_id,
        assets=assets,
        message=None if result.success else _failure_text(result),
    )


def sync_clients(
    client_ids: list[str],
    *,
    full_refresh: bool = False,
    streams: list[str] | None = None,
    parallel: int = 4,
    progress: ProgressSink | None = None,
    on_done: Callable[[ClientSyncOutcome], None] | None = None,
) -> list[ClientSyncOutcome]:
    """Sync clients side by side, each in its own process; outcomes in the given order."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        updates = manager.Queue()
        stop = threading.Event()
        drawer = threading.Thread(target=_drain, args=(updates, progress, stop), daemon=True)
        drawer.start()
        try:
            with ProcessPoolExecutor(max_workers=max(1, min(parallel, len(client_ids))),
                                     mp_context=context) as pool:
                futures = {
                    client: pool.submit(materialize_client, client, full_refresh, streams,
                                        updates if progress else None)
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
        start_new_session=True, env=os.environ.copy(),
    )
