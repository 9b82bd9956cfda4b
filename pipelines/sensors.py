"""Sensors: keep the client partitions in step with clients.yaml and the connection store."""


from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from assets.partitions import CLIENTS_PARTITION_NAME
from engine.client_config import load_client_configs
from engine.connection_store import ConnectionState, ConnectionStore
from pipelines.run_health import fail_dead_runs


@sensor(
    name="register_clients",
    minimum_interval_seconds=60,
    description="Adds a partition for every client declared in clients.yaml or connected with "
    "`stripe-reports connect`, so schedules and the UI see it.",
)
def register_clients_sensor(context: SensorEvaluationContext):
    wanted = set(load_client_configs())
    wanted |= {
        c.client_id for c in ConnectionStore.from_settings().list()
        if c.state != ConnectionState.DISCONNECTED
    }
    known = set(context.instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME))
    missing = sorted(wanted - known)
    if not missing:
        return SkipReason("Every client already has its partition.")
    context.instance.add_dynamic_partitions(CLIENTS_PARTITION_NAME, missing)
    context.log.info(f"Registered clients: {', '.join(missing)}")
    return SkipReason(f"Registered {len(missing)} new client(s).")


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
