"""Sensors: keep the client partitions in step with clients.yaml and the connection store."""

from datetime import UTC, datetime

from dagster import (
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.client_health import judge_unjudged_list, refresh_reconnect_list, report_freshness
from assets.partitions import CLIENTS_PARTITION_NAME
from engine.client_config import ClientsFileError
from engine.clients import active_clients
from engine.connection_store import ConnectionStore
from engine.warehouse_factory import warehouse_from_settings
from pipelines.batches import batch_run_requests, stripe_sync_batch_job
from pipelines.run_health import fail_dead_runs

HEALTH_TICK_BUDGET_SECONDS = 30.0


@sensor(
    name="register_clients",
    minimum_interval_seconds=60,
    job=stripe_sync_batch_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a partition for every active client (declared in clients.yaml with its "
    "key in the environment, or connected with `stripe-reports connect`; never a disconnected "
    "one), so schedules and the UI see it, and syncs a newly active client at once rather "
    "than at its next scheduled time.",
)
def register_clients_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    wanted = set(active_clients())
    known = set(context.instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME))
    missing = sorted(wanted - known)
    if not missing:
        return SkipReason("Every client already has its partition.")
    # Added here, not through SensorResult: the first runs below need the partitions to exist.
    context.instance.add_dynamic_partitions(CLIENTS_PARTITION_NAME, missing)
    context.log.info(f"Registered clients: {', '.join(missing)}")
    # Dagster skips a sensor's run key it has seen before: stamped with the registration, a
    # client registered again (disconnected, then declared or connected anew) syncs again.
    registered_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    return SensorResult(run_requests=batch_run_requests(
        context.instance, missing, "sensor", f"first-sync@{registered_at}"))


@sensor(
    name="fail_dead_runs",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks runs whose process died (killed, crashed) as failed within a minute, "
    "so they stop holding places in the run queue and every client's schedule goes on.",
)
def fail_dead_runs_sensor(context: SensorEvaluationContext):
    failed = fail_dead_runs(context.instance)
    if failed:
        context.log.warning(f"Marked {len(failed)} dead run(s) failed: {', '.join(failed)}")
    return SkipReason(f"{len(failed)} dead run(s) marked failed.")


@sensor(
    name="client_health",
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description="Between syncs, judges every client's figures against its own schedule (the "
    "figures_fresh check, one result per client) and keeps stripe/clients_needing_reconnect "
    "in step with the connection store (a `connect` or `disconnect` from the CLI or the web "
    "page). Records only what changed; launches no run.",
)
def client_health_sensor(context: SensorEvaluationContext) -> SkipReason:
    clients = context.instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME)
    try:
        clients = active_clients(among=clients)
    except ClientsFileError as error:  # the schedules' ticks fail with it; judge every one
        context.log.warning(str(error))
    # Recording a verdict costs Dagster 20-70 ms: a first tick over 1,000 clients would
    # overrun the sensor's 60 s limit, so a tick records what fits and the next the rest.
    changed = report_freshness(context.instance, clients, warehouse_from_settings(),
                               budget_seconds=HEALTH_TICK_BUDGET_SECONDS)
    if changed:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10
                                           else "")
        context.log.info(f"Freshness verdict changed for: {shown}")
    with ConnectionStore.from_settings() as store:
        listed = refresh_reconnect_list(context.instance, store)
        judge_unjudged_list(context.instance, store)
    return SkipReason(f"{len(changed)} freshness verdict(s) changed; reconnect list "
                      f"{'refreshed' if listed else 'unchanged'}.")
