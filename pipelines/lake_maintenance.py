"""The nightly DuckLake maintenance: small files merged, old snapshots expired, unused files
deleted (`LakeWarehouse.maintain`: the steps of DuckLake's CHECKPOINT).

Every client's sync and build leaves small Parquet files and a snapshot behind, and DuckLake
keeps them all until told; every statement reads the growing file list from the catalog.
On the DuckDB file the job has nothing to do and says so.
"""

from datetime import timedelta

from dagster import (
    Config,
    DefaultScheduleStatus,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from engine.lake.warehouse import LakeWarehouse
from resources.dagster_resources import WarehouseResource

MAINTENANCE_JOB_NAME = "lake_maintenance_job"
MAINTENANCE_SCHEDULE_NAME = "lake_maintenance_nightly"
MAINTENANCE_CRON = "30 3 * * *"  # in UTC, after midnight's syncs and before the working day


class MaintenanceConfig(Config):
    # Time travel reaches back this far; older snapshots are expired.
    keep_snapshots_days: float = 7.0
    # A file no snapshot uses any more is deleted this long after, not at once: a reader
    # that began before the pass may still be scanning it.
    keep_unused_files_hours: float = 24.0


@op(description="DuckLake's maintenance steps, a table at a time in the commit turn.")
def maintain_lake(context: OpExecutionContext, config: MaintenanceConfig,
                  warehouse: WarehouseResource) -> None:
    target = warehouse.open()
    if not isinstance(target, LakeWarehouse):
        context.log.info("The warehouse is a DuckDB file: DuckLake maintenance has nothing "
                         "to do.")
        return
    done = target.maintain(timedelta(days=config.keep_snapshots_days),
                           timedelta(hours=config.keep_unused_files_hours))
    context.log.info(
        f"DuckLake maintenance in {done.seconds:.1f} s: data and delete files "
        f"{done.files_before:,} -> {done.files_after:,}, snapshots "
        f"{done.snapshots_before:,} -> {done.snapshots_after:,}.")


@job(name=MAINTENANCE_JOB_NAME,
     description="Merge DuckLake's small files, expire old snapshots, delete unused files.")
def lake_maintenance_job() -> None:
    maintain_lake()


lake_maintenance_schedule = ScheduleDefinition(
    name=MAINTENANCE_SCHEDULE_NAME,
    cron_schedule=MAINTENANCE_CRON,
    job=lake_maintenance_job,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly DuckLake maintenance (on the DuckDB file: nothing to do).",
)
