"""The batch job declares the assets its clients' runs materialize, so Dagster's asset pages
show the sync schedules under "Automation".

Dagster lists on an asset page the schedules and sensors whose job is one of the asset's
jobs (`asset_node_snap.job_names`). The schedules launch `stripe_sync_batch_job`, an op job
whose one op runs each client's `stripe_sync_job` in turn (pipelines/batches.py): without
this, every asset said "Automation –" although the hourly schedule keeps them all current.
The batch job stays an op job (its launchpad, its config, its runs): only the assets name it.

Dagster offers no public way for an op job to name assets it materializes through other
runs; `AssetLayer.for_external_job` is its own way for jobs that execute elsewhere (private,
listed in tests/test_dagster_private_api.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetKey, AssetsDefinition, JobDefinition
from dagster._core.definitions.assets.job.asset_layer import AssetLayer

from assets.reporting import reporting_assets
from assets.stripe_assets import stripe_sync
from pipelines.jobs import SYNC_SELECTION


def sync_job_asset_keys() -> list[AssetKey]:
    """The assets `stripe_sync_job` materializes: the Stripe tables and the reporting ones."""
    assets: Sequence[AssetsDefinition] = [stripe_sync, *reporting_assets]
    return sorted(SYNC_SELECTION.resolve(assets), key=lambda key: key.to_user_string())


def declaring_assets(job_def: JobDefinition, asset_keys: Sequence[AssetKey]) -> JobDefinition:
    """`job_def`, unchanged in what it runs, named by `asset_keys` as one of their jobs.

    Dagster's own copy (`_copy`, as `with_top_level_resources` uses) keeps the rest whole;
    the resource binding of Definitions copies the asset layer along."""
    return job_def._copy(asset_layer=AssetLayer.for_external_job(asset_keys))
