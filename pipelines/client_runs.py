"""One client's run of `stripe_sync_job`, executed in this process against the instance.

Every launch path ends here: the batch op (its job found from its own context), and the apps
(apps/launch.py, which hands over the job from the one Definitions). Each run shows in the
Dagster UI beside the scheduled ones, tagged with who launched it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, DagsterExecutionInterruptedError, JobDefinition, RunConfig

from assets.reporting.assets import reporting_asset_key
from assets.stripe_assets import BALANCE_KEY, SyncConfig, stream_asset_key
from engine.lake.database import set_databases_aside
from engine.progress import ProgressSink, progress_sink
from engine.reporting import REPORTING_TABLES
from engine.streams import resolve_streams
from engine.user_errors import LOST_DATABASE, explain, lost_database
from pipelines.instance import get_instance, register_clients
from pipelines.jobs import launcher_tags
from pipelines.run_health import fail_dead_runs, this_process_tags
from pipelines.sqlite_files import (
    engines_kept,
    files_kept_open,
    sqlite_commits_without_fsync,
)

QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}
# What the UI groups a job's runs by; runs executed here have no code location of their own.
REPOSITORY_LABEL = "__repository__@stripe_reports"
# The instance's kept database connections: renewed hourly; more open while threads write.
POOL_RECYCLE_SECONDS = 3600
POOL_OVERFLOW = 20
# Seconds before each new run when PostgreSQL was lost mid-run: a restart takes seconds.
DATABASE_RETRY_WAITS = (2.0, 5.0, 10.0)


@dataclass
class ClientSyncOutcome:
    client_id: str
    success: bool
    run_id: str | None = None
    # asset key -> its materialization metadata (rows_inserted, api_requests, ...)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    message: str | None = None
    # Nothing new and no build due: recorded as checked, without a run (batch_checks)
    checked_without_run: bool = False


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
            if error is None:
                return "The sync failed."
            if lost_database(error.cls_name, error.message):
                return LOST_DATABASE
            return _without_class_name(error.cls_name, error.message)
    return "The sync failed."


def _without_class_name(cls_name: str | None, message: str) -> str:
    """Dagster writes an error as `module.Class: message`; a person reads the message only."""
    text = message.strip()
    head, separator, rest = text.partition(": ")
    if separator and cls_name and head.rsplit(".", 1)[-1] == cls_name:
        return rest.strip()
    return text


def run_sync_job(job: JobDefinition, client_id: str, instance: Any, *,
                 full_refresh: bool = False,
                 streams: list[str] | None = None, launched_by: str = "cli",
                 tags: dict[str, str] | None = None) -> Any:
    """One run of `stripe_sync_job` for the client's partition, in this process."""
    config = SyncConfig(full_refresh=full_refresh, streams=list(streams or []))
    return job.execute_in_process(
        run_config=RunConfig(ops={"stripe_sync": config}, loggers=QUIET_LOGGERS),
        instance=instance,
        partition_key=client_id,
        asset_selection=asset_selection(streams),
        # Shown in the run list: Dagster's partition (the client), who launched it and, in a
        # batch, its batch run; the rest is hidden (`.dagster/`). No `client` tag: it would
        # repeat the partition.
        tags={".dagster/repository": REPOSITORY_LABEL, **launcher_tags(launched_by),
              **(tags or {})},
        raise_on_error=False,
    )


INTERRUPTS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")


def _interrupted(result: Any) -> bool:
    """Whether the run failed because this process was interrupted (Ctrl-C, SIGINT): Dagster
    records the run failed, and the caller must stop, not go on to the next client."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                if error.cls_name in INTERRUPTS:
                    return True
                error = error.cause
    return False


def _outcome(client_id: str, result: Any) -> ClientSyncOutcome:
    assets = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        assets[materialization.asset_key.to_user_string()] = {
            key: value.value for key, value in materialization.metadata.items()
        }
    for event in result.all_events:  # a check that found nothing new observes, and says so
        if event.is_asset_observation:
            observation = event.asset_observation_data.asset_observation
            assets.setdefault(observation.asset_key.to_user_string(), {
                key: value.value for key, value in observation.metadata.items()})
    return ClientSyncOutcome(
        client_id=client_id, success=result.success, run_id=result.run_id, assets=assets,
        message=None if result.success else _failure_text(result),
    )


def _lost_database(error: Exception) -> bool:
    problem = explain(error)  # ours, or the lake's one line when its catalog cannot be opened
    return problem is not None and _lost_database_text(problem.message)


def _lost_database_text(text: str) -> bool:
    """A run's failure that says PostgreSQL went away (ours, or the lake's own one line)."""
    return text == LOST_DATABASE or ("postgres" in text.lower()
                                     and lost_database("Error", text))


def _retried_on_lost_database(run: Callable[[], Any]) -> Any:
    """A run that lost PostgreSQL (a restart of the connection store's, the DuckLake catalog's
    or the Dagster storage's server) runs again a few times, after growing waits: each new run
    resumes from what landed. Any other outcome is final."""
    for wait in DATABASE_RETRY_WAITS:
        try:
            result = run()
        except Exception as error:
            if not _lost_database(error):
                raise
        else:
            if result.success or not _lost_database_text(_failure_text(result)):
                return result
        set_databases_aside()
        time.sleep(wait)
    return run()


def without_logging_reconfigured(instance: Any) -> None:
    """Runs in threads side by side (pipelines/batches.py) must not deadlock on logging.

    At each run's start Dagster applies the instance's `python_logs` handlers with
    logging.config.dictConfig, even when there are none: that holds logging's module lock
    while it flushes every handler in the process, another run's included, and a run
    writing an event holds its handler while it waits for the SQLite event log's lock,
    whose holder waits for logging's lock: 4 clients side by side hung for good. With no
    `python_logs` handlers configured (dagster.yaml has none) the answer is no handlers,
    given without reconfiguring logging; an instance that has some keeps Dagster's way.
    """
    if not instance.get_python_log_dagster_handler_config():
        instance.get_yaml_python_handlers = list  # an empty list, as Dagster's would be


def prepare_instance(instance: Any, client_ids: list[str]) -> None:
    """Before syncing: dead runs marked failed (they must not hold a place in the queue), and
    every client a partition. Once per process start, not once per client.

    The instance also keeps its database connections for the process's many writes (a
    client's run writes ~100 events): Dagster's PostgreSQL storage otherwise opens one for
    each, 48 ms an event against 3 ms kept (load 8). It is the method Dagster's webserver
    uses; on SQLite it does nothing."""
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS,
                                    max_overflow=POOL_OVERFLOW)
    without_logging_reconfigured(instance)
    sqlite_commits_without_fsync(instance)
    engines_kept(instance.event_log_storage)
    fail_dead_runs(instance)
    register_clients(instance, client_ids)


def materialize_client(
    client_id: str,
    full_refresh: bool = False,
    streams: list[str] | None = None,
    *,
    job: JobDefinition,
    launched_by: str,
    progress: ProgressSink | None = None,
    instance: Any = None,
    tags: dict[str, str] | None = None,
) -> ClientSyncOutcome:
    """Run one client's sync in this process, recorded in the Dagster instance: the settings'
    own, or `instance`, which the caller (a batch run) has readied with prepare_instance."""
    try:
        # Dagster's SQLite files stay open until the run ends (pipelines.sqlite_files).
        with progress_sink(progress), files_kept_open():
            if instance is None:
                instance = get_instance()
                prepare_instance(instance, [client_id])
            result = _retried_on_lost_database(lambda: run_sync_job(
                job, client_id, instance, full_refresh=full_refresh, streams=streams,
                launched_by=launched_by, tags={**this_process_tags(), **(tags or {})}))
    except DagsterExecutionInterruptedError:  # Ctrl-C between steps: as within one
        raise KeyboardInterrupt from None
    except Exception as error:  # a full disk, a damaged instance: one line, not a traceback
        problem = explain(error)
        if problem is None:
            raise
        return ClientSyncOutcome(client_id, False, message=problem.message)
    if not result.success and _interrupted(result):
        raise KeyboardInterrupt  # recorded as failed in Dagster and in the warehouse
    return _outcome(client_id, result)
