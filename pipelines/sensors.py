"""Sensors: keep the client partitions in step with clients.yaml and the connection store."""


from dagster import SensorEvaluationContext, SkipReason, sensor

from assets.partitions import CLIENTS_PARTITION_NAME
from resources.client_config import load_client_configs
from resources.connection_store import ConnectionState, ConnectionStore


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
