"""Scheduled syncs in batch runs: few run requests per tick, each client still its own run."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

from dagster import DagsterRunStatus, RunRequest, RunsFilter, build_schedule_context

from engine.warehouse_factory import warehouse_from_settings
from pipelines.batches import (
    BATCH_JOB_NAME,
    BATCH_TAG,
    MAX_BATCH_SIZE,
    batch_clients,
    client_batches,
    run_workers,
)
from pipelines.definitions import defs
from pipelines.instance import connect_and_register, get_instance, register_clients
from pipelines.jobs import LAUNCHED_BY_TAG, SYNC_JOB_NAME
from pipelines.schedules import build_sync_schedules
from sandbox import AccountSpec
from support.batch_runs import run_batch

TICK = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_a_tick_of_1000_clients_asks_for_few_runs_covering_each_client_once(home, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("SOME_KEY", "sk_test_one_key_for_every_client")  # a key: active
    clients = [f"client_{i:04d}" for i in range(1000)]
    (tmp_path / "clients.yaml").write_text(
        "clients:\n" + "".join(f"  {c}: {{key_env: SOME_KEY}}\n" for c in clients))
    instance = get_instance()
    register_clients(instance, clients)
    hourly = next(s for s in build_sync_schedules() if s.name == "stripe_sync_hourly")

    data = hourly.evaluate_tick(build_schedule_context(
        instance=instance, scheduled_execution_time=TICK, repository_def=defs.get_repository_def()))

    requests = [r for r in data.run_requests or [] if isinstance(r, RunRequest)]
    assert len(requests) == 1000 // MAX_BATCH_SIZE
    covered = [client for r in requests for client in batch_clients(r.run_config)]
    assert sorted(covered) == clients  # every client once: none left out, none twice
    assert len({r.run_key for r in requests}) == len(requests)
    assert {r.tags[LAUNCHED_BY_TAG] for r in requests} == {"schedule"}
    # Run monitoring's 6 h limit (dagster.yaml) holds per client, not per batch.
    assert {r.tags["dagster/max_runtime"] for r in requests} == {str(21600 * MAX_BATCH_SIZE)}


def _tick_clients(instance) -> list[str]:
    hourly = next(s for s in build_sync_schedules() if s.name == "stripe_sync_hourly")
    data = hourly.evaluate_tick(build_schedule_context(
        instance=instance, scheduled_execution_time=TICK, repository_def=defs.get_repository_def()))
    return sorted(c for r in data.run_requests or [] if isinstance(r, RunRequest)
                  for c in batch_clients(r.run_config))


def test_clients_still_in_an_unfinished_batch_are_left_out_of_the_next_tick(home, tmp_path,
                                                                            monkeypatch):
    # Dagster's test helper: a run record as the queue holds it (an internal, test-only API).
    from dagster._core.test_utils import create_run_for_test

    monkeypatch.setenv("SOME_KEY", "sk_test_one_key_for_every_client")  # a key: active

    (tmp_path / "clients.yaml").write_text(
        "clients:\n" + "".join(f"  {c}: {{key_env: SOME_KEY}}\n" for c in ("a", "b", "c")))
    instance = get_instance()
    register_clients(instance, ["a", "b", "c"])
    slow = create_run_for_test(instance, job_name=BATCH_JOB_NAME, status=DagsterRunStatus.STARTED,
                               run_config={"ops": {"sync_clients_in_turn": {"config": {
                                   "clients": ["a", "b"], "launched_by": "schedule"}}}})
    assert _tick_clients(instance) == ["c"]
    instance.report_run_failed(slow)
    assert _tick_clients(instance) == ["a", "b", "c"]


def test_the_queue_starts_four_batches_and_leaves_room_for_their_client_runs(home):
    queue = get_instance().get_concurrency_config().run_queue_config
    assert run_workers(get_instance()) == 4
    # A batch's client run is a run in progress too: the global cap must hold both.
    assert queue.max_concurrent_runs >= 2 * run_workers(get_instance())


def test_few_clients_still_sync_side_by_side_on_the_run_workers():
    assert client_batches(["a", "b", "c"], run_workers=4) == [["a"], ["b"], ["c"]]
    assert client_batches([f"c{i}" for i in range(10)], run_workers=4)[0] == ["c0", "c1", "c2"]
    many = client_batches([str(i) for i in range(250)], run_workers=2)
    assert [len(batch) for batch in many] == [MAX_BATCH_SIZE] * 2 + [250 - 2 * MAX_BATCH_SIZE]


def test_a_batch_run_syncs_each_client_in_its_own_run_and_names_the_one_that_failed(
        home, sandbox_factory):
    server = sandbox_factory([AccountSpec(name, charges=40, customers=8, subscriptions=3)
                              for name in ("acme", "globex", "initech")])
    for name, account in server.world.accounts.items():
        connect_and_register(name, account.secret_key, api_base=server.base_url)
    server.world.revoke_key("globex")
    instance = get_instance()

    batch = run_batch(instance, ["acme", "globex", "initech"])

    assert not batch.success
    failure = next(e for e in batch.all_events if e.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert "1 of 3 clients failed" in description and "globex" in description
    assert "acme" not in description and "initech" not in description
    runs = {r.tags["dagster/partition"]: r for r in instance.get_runs(
        filters=RunsFilter(job_name=SYNC_JOB_NAME, tags={BATCH_TAG: batch.run_id}))}
    assert {c: r.status for c, r in runs.items()} == {
        "acme": DagsterRunStatus.SUCCESS, "globex": DagsterRunStatus.FAILURE,
        "initech": DagsterRunStatus.SUCCESS}
    assert {r.tags[LAUNCHED_BY_TAG] for r in runs.values()} == {"schedule"}
    with warehouse_from_settings().reader() as conn:
        synced = dict(conn.execute(
            "SELECT client_id, count(*) FROM stripe.charges GROUP BY client_id").fetchall())
    assert synced == {"acme": 40, "initech": 40}  # the revoked key stopped nobody else


def test_a_batch_run_syncs_its_clients_side_by_side_with_stripe_like_latency(
        home, sandbox_factory):
    names = ("acme", "globex", "initech", "umbrella")
    server = sandbox_factory([AccountSpec(name, charges=20, customers=4, subscriptions=2)
                              for name in names])
    for name, account in server.world.accounts.items():
        connect_and_register(name, account.secret_key, api_base=server.base_url)
    server.configure(latency_ms=150)  # each client's requests wait as at Stripe
    instance = get_instance()

    batch = run_batch(instance, list(names))

    assert batch.success
    runs = instance.get_run_records(
        filters=RunsFilter(job_name=SYNC_JOB_NAME, tags={BATCH_TAG: batch.run_id}))
    assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == sorted(names)
    assert {r.dagster_run.status for r in runs} == {DagsterRunStatus.SUCCESS}
    # Side by side: a client's run starts before another one's has ended (one after
    # another, each would start after the previous end).
    spans = sorted((r.start_time, r.end_time) for r in runs)
    assert any(later_start < end for (_, end), (later_start, _) in pairwise(spans))
    with warehouse_from_settings().reader() as conn:
        synced = dict(conn.execute(
            "SELECT client_id, count(*) FROM stripe.charges GROUP BY client_id").fetchall())
    assert synced == dict.fromkeys(names, 20)  # every client's rows, none twice


def test_dagster_sqlite_files_commit_without_an_fsync_each_and_no_other_file(home, tmp_path):
    import sqlite3

    import sqlalchemy as db

    from pipelines.client_runs import prepare_instance

    instance = get_instance()
    prepare_instance(instance, ["acme"])
    with instance.event_log_storage.index_connection() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    other = db.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, untouched
    assert sqlite3.connect(tmp_path / "plain.db").execute("PRAGMA synchronous").fetchone() == (2,)


def test_a_client_run_starting_leaves_the_processes_logging_alone(home):
    """Dagster reapplies `python_logs` at each run's start (logging.config.dictConfig), which
    clears every named handler in the process and, with runs in threads, deadlocked them.
    The instance has no `python_logs` handlers: none are applied, nothing is reset."""
    import logging

    from pipelines.client_runs import prepare_instance

    instance = get_instance()
    prepare_instance(instance, ["acme"])
    probe = logging.NullHandler()
    probe.set_name("side-by-side-probe")  # a named handler, as dictConfig would clear
    try:
        assert instance.get_handlers()  # what a run's log manager asks for
        assert logging._handlers.get("side-by-side-probe") is probe
    finally:
        logging._handlers.pop("side-by-side-probe", None)


def test_a_batch_run_checks_its_clients_and_runs_only_those_with_something_new(
        home, sandbox_factory):
    """Issue 21: a client with nothing new costs no run of its own. The batch run checks
    it (its sync), records it as checked (an observation of its stripe/balance, its
    credential check passed); a client with new charges gets its run, which takes over the
    batch's sync: its rows show in the run, and no request is made twice."""
    import time

    from dagster import AssetKey
    from dagster._core.event_api import PartitionKeyFilter

    from assets.client_health import BALANCE_KEY, CREDENTIAL_CHECK_KEY
    from engine.freshness import read_built_at
    from engine.sync import SETTLE_SECONDS

    names = ("acme", "globex", "initech")
    server = sandbox_factory([AccountSpec(name, charges=20, customers=4, subscriptions=2)
                              for name in names])
    for name, account in server.world.accounts.items():
        connect_and_register(name, account.secret_key, api_base=server.base_url)
    instance = get_instance()
    assert run_batch(instance, list(names)).success
    time.sleep(SETTLE_SECONDS + 1)
    server.world.add_charges("globex", 3)
    time.sleep(SETTLE_SECONDS + 1)  # a sync leaves the last seconds' objects to the next
    server.reset_stats()
    batch_started = time.time()

    batch = run_batch(instance, list(names))

    assert batch.success
    runs = instance.get_runs(filters=RunsFilter(job_name=SYNC_JOB_NAME,
                                                tags={BATCH_TAG: batch.run_id}))
    assert [r.tags["dagster/partition"] for r in runs] == ["globex"]  # the one with news
    charges = instance.get_latest_materialization_event(AssetKey(["stripe", "charges"]))
    assert charges.run_id == runs[0].run_id
    assert charges.asset_materialization.partition == "globex"
    # What the batch's sync landed shows in the client's run, which did not sync again.
    assert charges.asset_materialization.metadata["rows_inserted"].value == 3
    requests = server.stats()["by_account"]
    assert requests[server.world.accounts["globex"].account_id] <= 8
    assert max(requests[server.world.accounts[n].account_id] for n in ("acme", "initech")) <= 5
    with warehouse_from_settings().reader() as conn:
        synced = dict(conn.execute(
            "SELECT client_id, count(*) FROM stripe.charges GROUP BY client_id").fetchall())
    assert synced == {"acme": 20, "globex": 23, "initech": 20}
    with warehouse_from_settings().reader() as conn:  # their figures count as built now
        built = {c: read_built_at(conn, c).timestamp() for c in names}
    assert min(built.values()) > batch_started
    # The quiet clients: checked now, by this batch run, each under its own partition.
    observed = {}
    for record in instance.fetch_observations(BALANCE_KEY, limit=10).records:
        observation = record.asset_observation
        observed.setdefault(observation.partition, observation.metadata)
    for client in ("acme", "initech"):
        assert observed[client]["batch_run"].value == batch.run_id
        assert observed[client]["changed"].value is False
        verdict = instance.event_log_storage.get_asset_check_execution_history(
            CREDENTIAL_CHECK_KEY, limit=1, partition_filter=PartitionKeyFilter(key=client))[0]
        evaluation = verdict.event.dagster_event.asset_check_evaluation_data
        assert evaluation.passed  # the credential check's pass, per client, checked now
        assert verdict.event.timestamp > batch_started
    assert "globex" not in observed or observed["globex"].get("batch_run") is None
