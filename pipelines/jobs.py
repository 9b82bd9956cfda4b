"""Jobs: the per-client sync (Stripe streams, then the reporting tables)."""

from dagster import AssetSelection, define_asset_job

SYNC_JOB_NAME = "stripe_sync_job"

stripe_sync_job = define_asset_job(
    SYNC_JOB_NAME,
    selection=AssetSelection.groups("stripe").downstream(),
    description="Sync one client's Stripe account into DuckDB and rebuild its reporting tables.",
)
