"""Schedules: every connected client synced at the cadence set in clients.yaml (hourly default),
in a few batch runs per tick (pipelines/batches.py), each client still in a run of its own."""

import re

from dagster import (
    DefaultScheduleStatus,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
)

from assets.partitions import CLIENTS_PARTITION_NAME
from engine.client_config import (
    DEFAULT_SCHEDULE,
    ClientsFileError,
    load_client_configs,
    read_clients_file,
)
from engine.clients import active_clients
from pipelines.batches import (
    batch_run_requests,
    clients_in_unfinished_batches,
    stripe_sync_batch_job,
)


def _schedule_name(cron: str) -> str:
    if cron == DEFAULT_SCHEDULE:
        return "stripe_sync_hourly"
    return "stripe_sync_" + (re.sub(r"[^0-9a-z]+", "_", cron.replace("*", "x")).strip("_") or "x")


def clients_on(cron: str, partition_keys: list[str]) -> list[str]:
    """The registered clients that sync on `cron` (undeclared clients run on the default).

    Only active clients (engine.clients): a disconnected client, one whose key was withdrawn
    from the environment, a stray partition or a broken clients.yaml entry gets no run.
    """
    configs = read_clients_file().configs
    return [
        client for client in active_clients(among=partition_keys)
        if (configs[client].schedule if client in configs else DEFAULT_SCHEDULE) == cron
    ]


def _not_in_unfinished_batches(context: ScheduleEvaluationContext,
                               clients: list[str]) -> list[str]:
    busy = clients_in_unfinished_batches(context.instance) & set(clients)
    if busy:
        context.log.warning(f"{len(busy)} client(s) still in an unfinished batch run are left "
                            "out of this tick.")
    return [client for client in clients if client not in busy]


def _build(cron: str) -> ScheduleDefinition:
    def evaluate(context: ScheduleEvaluationContext):
        for problem in read_clients_file().problems.values():
            context.log.warning(problem)
        clients = clients_on(cron, context.instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME))
        if not clients:
            yield SkipReason(f"No connected client syncs on '{cron}'.")
            return
        clients = _not_in_unfinished_batches(context, clients)
        if not clients:
            yield SkipReason("Every client of this tick is still in an unfinished batch run.")
            return
        scheduled = context.scheduled_execution_time
        tick = scheduled.isoformat() if scheduled else ""
        yield from batch_run_requests(context.instance, clients, "schedule", tick)

    return ScheduleDefinition(
        name=_schedule_name(cron),
        cron_schedule=cron,
        job=stripe_sync_batch_job,
        execution_fn=evaluate,
        default_status=DefaultScheduleStatus.RUNNING,  # the product's promise, not an option
        description=f"Sync every client whose cadence is '{cron}': a few batch runs, each "
        "running its clients' stripe_sync_job runs in turn.",
    )


def build_sync_schedules() -> list[ScheduleDefinition]:
    """One schedule per cadence in use. A clients.yaml that cannot be read leaves the hourly
    schedule, whose ticks then fail with the file's problem (the code location still loads)."""
    try:
        configs = load_client_configs()
    except ClientsFileError:
        configs = {}
    crons = {DEFAULT_SCHEDULE} | {c.schedule for c in configs.values()}
    return [_build(cron) for cron in sorted(crons)]
