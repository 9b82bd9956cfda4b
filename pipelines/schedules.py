"""Schedules: one run per connected client, at the cadence set in clients.yaml (hourly default)."""


import re

from dagster import RunRequest, ScheduleDefinition, ScheduleEvaluationContext, SkipReason

from assets.partitions import CLIENTS_PARTITION_NAME
from pipelines.jobs import stripe_sync_job
from resources.client_config import DEFAULT_SCHEDULE, load_client_configs


def _schedule_name(cron: str) -> str:
    if cron == DEFAULT_SCHEDULE:
        return "stripe_sync_hourly"
    return "stripe_sync_" + (re.sub(r"[^0-9a-z]+", "_", cron.replace("*", "x")).strip("_") or "x")


def clients_on(cron: str, partition_keys: list[str]) -> list[str]:
    """The registered clients whose cadence is `cron` (undeclared clients run on the default)."""
    configs = load_client_configs()
    return [
        client for client in partition_keys
        if (configs[client].schedule if client in configs else DEFAULT_SCHEDULE) == cron
    ]


def _build(cron: str) -> ScheduleDefinition:
    def evaluate(context: ScheduleEvaluationContext):
        clients = clients_on(cron, context.instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME))
        if not clients:
            yield SkipReason(f"No connected client syncs on '{cron}'.")
            return
        scheduled = context.scheduled_execution_time
        tick = scheduled.isoformat() if scheduled else ""
        for client in clients:
            yield RunRequest(run_key=f"{client}:{tick}", partition_key=client,
                             tags={"client": client})

    return ScheduleDefinition(
        name=_schedule_name(cron),
        cron_schedule=cron,
        job=stripe_sync_job,
        execution_fn=evaluate,
        description=f"Sync every client whose cadence is '{cron}', one run per client.",
    )


def build_sync_schedules() -> list[ScheduleDefinition]:
    crons = {DEFAULT_SCHEDULE} | {c.schedule for c in load_client_configs().values()}
    return [_build(cron) for cron in sorted(crons)]
