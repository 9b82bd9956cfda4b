"""Jobs: the per-client sync (Stripe streams, then the reporting tables)."""

from dagster import AssetSelection, define_asset_job, in_process_executor

SYNC_JOB_NAME = "stripe_sync_job"
LAUNCHED_BY_TAG = "stripe_reports/launched_by"
# `dagster`: launched in Dagster itself (the UI's launchpad, `dagster job launch`), the job's
# default; every other launcher overrides it with its own.
LAUNCHERS = ("cli", "web", "demo", "schedule", "sensor", "dagster")

# The Stripe tables and every table built from them: what a client's sync run materializes.
SYNC_SELECTION = AssetSelection.groups("stripe").downstream()

stripe_sync_job = define_asset_job(
    SYNC_JOB_NAME,
    selection=SYNC_SELECTION,
    description="Sync one client's Stripe account into DuckDB and rebuild its reporting tables. "
    "Config `ops.stripe_sync.config`: full_refresh, streams.",
    # One op fills the Stripe assets and one builds the reporting tables, one after the other:
    # a process per step would only add start-up time.
    executor_def=in_process_executor,
    tags={LAUNCHED_BY_TAG: "dagster"},
)


def launcher_tags(launched_by: str) -> dict[str, str]:
    """The tag saying who launched a sync run (docs/interface.md, Dagster)."""
    if launched_by not in LAUNCHERS:
        raise ValueError(f"Unknown launcher {launched_by!r}: use one of {', '.join(LAUNCHERS)}.")
    return {LAUNCHED_BY_TAG: launched_by}
