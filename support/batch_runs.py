"""A batch run of the sync, executed as Dagster's code server executes it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_batch(instance, clients: list[str], launched_by: str = "schedule",
              side_by_side: int | None = None):
    """A batch run executed as the code server executes it: the job loaded from the code
    location (pipelines.definitions), so its op finds the sync job in its own repository."""
    # Dagster's loader for a code location's job (internal): what `dagster api grpc` uses.
    from dagster import execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from pipelines.batches import BATCH_JOB_NAME

    repository = ReconstructableRepository.for_module("pipelines.definitions", "defs", str(ROOT))
    config = {"clients": clients, "launched_by": launched_by}
    if side_by_side is not None:  # else the job's default (pipelines/batches.py)
        config["side_by_side"] = side_by_side
    return execute_job(repository.get_reconstructable_job(BATCH_JOB_NAME), instance,
                       run_config={"ops": {"sync_clients_in_turn": {"config": config}}})
