"""The one Definitions object: every asset, check, job, schedule, sensor and resource."""

import warnings

from dagster import BetaWarning, Definitions

from assets.client_health import health_assets, health_checks
from assets.reconcile_check import reconciles_with_stripe
from assets.reporting import reporting_assets
from assets.stripe_assets import stripe_sync
from pipelines.alerts import credential_alert_sensor
from pipelines.batches import stripe_sync_batch_job
from pipelines.credential_watch import check_credentials_job, check_credentials_schedule
from pipelines.deliveries import report_deliveries_sensor, stripe_delivery_job
from pipelines.jobs import stripe_sync_job
from pipelines.lake_maintenance import lake_maintenance_job, lake_maintenance_schedule
from pipelines.schedules import build_sync_schedules
from pipelines.sensors import (
    client_health_sensor,
    fail_dead_runs_sensor,
    register_clients_sensor,
)
from resources.dagster_resources import StripeResource, WarehouseResource

# Dagster's own false alarm: binding the resources to a sensor's job (the batch job needs
# `stripe` and `warehouse`) re-creates the sensor with `owners` passed, and every command
# then printed a BetaWarning to stderr. No sensor here names owners.
warnings.filterwarnings("ignore", message="Parameter `owners` of initializer "
                        "`SensorDefinition.__init__`", category=BetaWarning)

RESOURCES = {"stripe": StripeResource(), "warehouse": WarehouseResource()}

ASSETS = [stripe_sync, *reporting_assets, *health_assets]

defs = Definitions(
    assets=ASSETS,
    asset_checks=[*health_checks, reconciles_with_stripe],
    jobs=[stripe_sync_job, stripe_sync_batch_job, check_credentials_job, lake_maintenance_job,
          stripe_delivery_job],
    schedules=[*build_sync_schedules(), check_credentials_schedule, lake_maintenance_schedule],
    sensors=[register_clients_sensor, credential_alert_sensor, fail_dead_runs_sensor,
             client_health_sensor, report_deliveries_sensor],
    resources=RESOURCES,
)
