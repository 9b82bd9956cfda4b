"""One run that syncs several clients: how a schedule tick covers many clients.

A run per client costs seconds of fixed work before any Stripe request: a process, the
imports, the run's launch (about 7 s for one client from the CLI, measured in
benchmarks/README.md). A tick of 1,000 clients also asked Dagster to check and submit 1,000
run requests, which overran its 60 s schedule limit. So a tick requests a few batch runs;
each batch run executes its clients' `stripe_sync_job` runs in its own process, a few side
by side (threads): separate Stripe accounts, so their network waits overlap. The batch run
checks each client first (its sync, made as its run would make it: pipelines/batch_checks.py):
a client with nothing new is recorded as checked without a run of its own (a run cost ~1.8 s
of Dagster's bookkeeping per client); any other client keeps a run of its own (its partition's
status, its checks, its failure and what to do), launched without a process of its own, which
takes over what the check's sync found.

Why not Dagster's single run over a partition range (`BackfillPolicy.single_run`): a range
is a contiguous slice of the partitions in the order they were added, while a cadence's
clients lie scattered among the others; and each step of such a run covers the whole range,
so one client's failed sync fails the step and skips the reporting build of every client in
it. A run per client keeps Dagster's per-client status, checks and messages as they were.
"""


import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from dagster import (
    Config,
    DagsterInstance,
    DagsterRunStatus,
    OpExecutionContext,
    RunRequest,
    RunsFilter,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from assets.known_failure import KnownFailure
from engine.warehouse import Warehouse
from pipelines.batch_assets import declaring_assets, sync_job_asset_keys
from pipelines.batch_checks import check_or_run, mark_checked, publish_health
from pipelines.client_runs import ClientSyncOutcome, materialize_client, prepare_instance
from pipelines.jobs import LAUNCHED_BY_TAG, SYNC_JOB_NAME, launcher_tags
from resources.dagster_resources import StripeResource, WarehouseResource

BATCH_JOB_NAME = "stripe_sync_batch_job"
BATCH_TAG = "stripe_reports/batch_run_id"
# On batch runs only (their clients): dagster.yaml limits the batch runs started at once by it.
CLIENTS_TAG = "stripe_reports/clients"
# Dagster's own tags, copied so the clients' runs show on the schedule's or sensor's page too.
ORIGIN_TAGS = ("dagster/schedule_name", "dagster/sensor_name")
MAX_RUNTIME_TAG = "dagster/max_runtime"  # Dagster's per-run override of run monitoring
# The most clients one batch run syncs: a batch's clients wait for each other, and a batch
# run costs ~4 s of a worker's CPU before its first client (a process, the Definitions'
# imports, the run's own events): with 25, a 1,000-client tick made 40 of them, ~160 s of
# CPU for nothing new; with 100, 10.
MAX_BATCH_SIZE = 100
# Clients a batch run syncs side by side, each in a thread of its own. They are separate
# Stripe accounts with separate rate limits, so one client's network waits (150 ms a request
# at Stripe) overlap the others' work instead of adding up. The warehouse keeps its writer
# rules whatever the threads: the DuckDB file's lock lets one writer in at a time, the
# DuckLake catalog takes concurrent commits; and one sync per client at a time still holds.
# PostgreSQL connections stay bounded too: the lake's at SESSIONS_PER_PROCESS a process
# (engine/lake/database.py), the store's and Dagster's in their pools, a lock a client.
SIDE_BY_SIDE = 4


class BatchConfig(Config):
    clients: list[str] = Field(description="The clients this run syncs.")
    launched_by: str = Field(default="schedule", description="Who asked for the batch.")
    side_by_side: int | None = Field(
        default=None, ge=1,
        description="How many of its clients the run syncs at once, each in its own run "
        f"(default: {SIDE_BY_SIDE}).")


def client_batches(clients: list[str], run_workers: int,
                   max_size: int = MAX_BATCH_SIZE) -> list[list[str]]:
    """Split clients into batches: at least one per run worker (so few clients still sync side
    by side), at most `max_size` clients each (so many clients fill the queue evenly)."""
    if not clients:
        return []
    size = max(1, min(max_size, math.ceil(len(clients) / max(1, run_workers))))
    return [clients[start:start + size] for start in range(0, len(clients), size)]


def run_workers(instance: DagsterInstance) -> int:
    """How many batch runs the instance's queue starts at once: dagster.yaml's limit on the
    batch tag, else its global max_concurrent_runs (which also counts the client runs)."""
    queue = instance.get_concurrency_config().run_queue_config
    if queue is None:
        return 1
    limits = [limit.get("limit", 0) for limit in queue.tag_concurrency_limits or []
              if limit.get("key") == CLIENTS_TAG and "value" not in limit]
    workers = min(limits) if limits else queue.max_concurrent_runs
    return max(1, workers)


def batch_run_requests(instance: DagsterInstance, clients: list[str], launched_by: str,
                       run_key_prefix: str) -> list[RunRequest]:
    """The batch runs that sync `clients`, spread over the instance's run workers."""
    requests = []
    for batch in client_batches(clients, run_workers(instance)):
        config = BatchConfig(clients=batch, launched_by=launched_by)
        requests.append(RunRequest(
            run_key=f"{run_key_prefix}:{batch[0]}",
            run_config={"ops": {"sync_clients_in_turn": {"config": config.model_dump()}}},
            tags={**launcher_tags(launched_by), **_runtime_limit(instance, len(batch)),
                  CLIENTS_TAG: _describe(batch)},
        ))
    return requests


def _runtime_limit(instance: DagsterInstance, clients: int) -> dict[str, str]:
    """Run monitoring's limit on a run (dagster.yaml: 6 h) is each client's: a batch gets it
    once per client, so 25 large first syncs in turn are not cut off as one slow run."""
    limit = instance.run_monitoring_max_runtime_seconds
    return {MAX_RUNTIME_TAG: str(limit * clients)} if limit else {}


def batch_clients(run_config: dict) -> list[str]:
    """The clients a batch run's config names."""
    return list(run_config["ops"]["sync_clients_in_turn"]["config"]["clients"])


UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
              DagsterRunStatus.STARTED]


def clients_in_unfinished_batches(instance: DagsterInstance) -> set[str]:
    """Clients of batch runs still queued or running: a new tick leaves them out, so a slow
    cycle never piles a second batch of the same clients behind the first."""
    runs = instance.get_runs(RunsFilter(job_name=BATCH_JOB_NAME, statuses=UNFINISHED))
    return {client for run in runs for client in batch_clients(run.run_config)}


def _describe(batch: list[str]) -> str:
    return batch[0] if len(batch) == 1 else f"{len(batch)} clients: {batch[0]} .. {batch[-1]}"


def _child_tags(context: OpExecutionContext) -> dict[str, str]:
    origin = {tag: context.run.tags[tag] for tag in ORIGIN_TAGS if tag in context.run.tags}
    return {BATCH_TAG: context.run_id, **origin}


@op(description="Check each client (its sync, as its run would make it), a few side by "
    "side: a client with nothing new is recorded as checked, the others get their own "
    "stripe_sync_job run, which takes over what the check found. Fails at the end, naming "
    "the clients that failed, if any did.")
def sync_clients_in_turn(context: OpExecutionContext, config: BatchConfig,
                         stripe: StripeResource, warehouse: WarehouseResource) -> None:
    prepare_instance(context.instance, config.clients)
    # The sync job of the code location this batch runs in: no import of the Definitions.
    sync_job = context.repository_def.get_job(SYNC_JOB_NAME)
    tags = _child_tags(context)
    opened = threading.local()  # one warehouse per thread: its schema checked once
    quiet: dict[str, datetime] = {}  # the clients checked without a run, and when

    def open_warehouse() -> Warehouse:
        if not hasattr(opened, "warehouse"):
            opened.warehouse = warehouse.open()
        return opened.warehouse

    def sync(client: str) -> ClientSyncOutcome:
        outcome, checked_at = check_or_run(
            client, stripe, open_warehouse(), context.instance,
            lambda: materialize_client(client, job=sync_job, launched_by=config.launched_by,
                                       instance=context.instance, tags=tags),
            context.log.info, launched={"batch_run": context.run_id})
        if checked_at is not None:
            quiet[client] = checked_at
        return outcome

    outcomes = _side_by_side(config.clients, sync,
                             config.side_by_side or SIDE_BY_SIDE)
    # Their figures count as built when checked (one writer session), then their health.
    mark_checked(stripe, open_warehouse(), quiet)
    publish_health(context.instance, stripe, open_warehouse(), list(quiet),
                   context.log.warning)
    failed = []
    for number, (client, outcome) in enumerate(zip(config.clients, outcomes, strict=True), 1):
        verdict = ("checked: nothing new, no run needed" if outcome.checked_without_run
                   else "synced") if outcome.success else f"failed: {outcome.message}"
        context.log.info(f"{number}/{len(config.clients)} {client} {verdict}"
                         + (f" (run {outcome.run_id})" if outcome.run_id else ""))
        if not outcome.success:
            failed.append(f"- {client}: {outcome.message}")
    context.log.info(f"{len(quiet)} of {len(config.clients)} clients had nothing new: "
                     "checked without a run of their own (see their assets' observations)")
    if failed:
        raise KnownFailure(
            description=f"{len(failed)} of {len(config.clients)} clients failed; the others "
            "synced. Each client's own run says what to do:\n" + "\n".join(failed),
            metadata={"failed_clients": len(failed)}, allow_retries=False)


def _side_by_side(clients: list[str], sync: Callable[[str], ClientSyncOutcome],
                  threads: int) -> list[ClientSyncOutcome]:
    """Each client's outcome, in the given order, `threads` clients syncing at once. An
    interruption (Ctrl-C, the run terminated) starts no further client; the batch ends
    once the clients already running have finished their runs."""
    if threads <= 1 or len(clients) <= 1:
        return [sync(client) for client in clients]
    pool = ThreadPoolExecutor(max_workers=min(threads, len(clients)),
                              thread_name_prefix="client-sync")
    try:
        futures: list[Future[ClientSyncOutcome]] = [pool.submit(sync, c) for c in clients]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@job(name=BATCH_JOB_NAME, executor_def=in_process_executor,
     tags={LAUNCHED_BY_TAG: "schedule"},
     description="Sync several clients in one run, each as its own stripe_sync_job run: what "
     "the schedules launch. Config: clients, launched_by.")
def _sync_batch_job() -> None:
    sync_clients_in_turn()


# The assets name the batch job as theirs: their pages show its schedules (pipelines/batch_assets).
stripe_sync_batch_job = declaring_assets(_sync_batch_job, sync_job_asset_keys())
