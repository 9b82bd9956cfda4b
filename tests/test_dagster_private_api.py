"""The canary: every private Dagster API the product relies on, and the shapes we use of it.

Dagster does not promise these between releases. When an upgrade moves or changes one, this
file fails first, naming it, instead of a health tick, a PostgreSQL instance or a benchmark
failing at run time. Where Dagster makes one public, switch to it and drop it here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import random
from pathlib import Path

import pytest
import sqlalchemy as db
from dagster import AssetCheckEvaluation, AssetCheckKey, AssetKey, DagsterInstance

ROOT = Path(__file__).resolve().parent.parent
# module -> names, and who uses them.
PRIVATE_APIS = {
    "dagster._core.definitions.asset_checks.asset_check_evaluation":
        ("AssetCheckEvaluationTargetMaterializationData",),  # assets/client_health.py
    "dagster._core.storage.asset_check_execution_record":
        ("AssetCheckExecutionRecordStatus",),  # assets/client_health.py
    "dagster._core.storage.event_log.schema":
        ("AssetCheckExecutionsTable",),  # assets/client_health.py (the DELETE)
    "dagster._serdes": ("ConfigurableClassData",),  # pipelines/postgres_storage.py
    "dagster._core.scheduler.instigation": ("InstigatorType",),  # benchmarks/clients_curve.py
    "dagster._core.definitions.assets.job.asset_layer": ("AssetLayer",),  # pipelines/batch_assets
    "dagster._core.errors": ("DagsterUserCodeProcessError",),  # assets/known_failure.py
    "dagster._utils.error": ("SerializableErrorInfo",),  # assets/known_failure.py
    "dagster._core.storage.event_log.sqlite.sqlite_event_log":
        ("SqliteEventLogStorage",),  # pipelines/sqlite_files.py (engines_kept)
    "dagster._core.storage.sqlite": ("SQLITE_BUSY_TIMEOUT_SECONDS",),  # the same
}
# dagster-postgres' internals our PostgreSQL storage subclass calls.
POSTGRES_INTERNALS = {"dagster_postgres": ("DagsterPostgresStorage",),
                      "dagster_postgres.utils": ("get_token_provider_from_config",
                                                 "pg_url_from_config")}
PRODUCT = ("engine", "resources", "assets", "pipelines", "reports", "apps", "scripts",
           "benchmarks")


def _private_imports() -> set[tuple[str, str]]:
    """(module, name) of every `from dagster._... import name` in the product."""
    found = set()
    for folder in PRODUCT:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                        ("dagster._", "dagster_postgres")):
                    found |= {(node.module, alias.name) for alias in node.names}
    return found


def test_the_instance_templates_compute_log_manager_loads():
    """dagster.yaml names NoOpComputeLogManager by its (private) module path."""
    import yaml

    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())["compute_logs"]
    manager = getattr(importlib.import_module(config["module"]), config["class"])
    assert manager.__name__ == "NoOpComputeLogManager"


def test_this_file_lists_every_private_import_of_the_product():
    listed = {(m, n) for table in (PRIVATE_APIS, POSTGRES_INTERNALS)
              for m, names in table.items() for n in names}
    assert _private_imports() == listed


@pytest.mark.parametrize("module,name", sorted(
    (m, n) for table in (PRIVATE_APIS, POSTGRES_INTERNALS) for m, names in table.items()
    for n in names))
def test_each_private_api_still_imports(module: str, name: str):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone"


def test_the_shapes_we_use_are_still_there():
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData as Target,
    )
    from dagster._core.scheduler.instigation import InstigatorType
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus as Status,
    )
    from dagster._serdes import ConfigurableClassData
    from dagster_postgres import DagsterPostgresStorage

    target = Target(storage_id=1, run_id="r", timestamp=1.0)
    assert (target.storage_id, target.run_id, target.timestamp) == (1, "r", 1.0)
    assert {"SUCCEEDED", "FAILED"} <= set(Status.__members__)
    assert InstigatorType.SCHEDULE.value == "SCHEDULE"
    assert {"module_name", "class_name", "config_yaml"} <= set(ConfigurableClassData._fields)
    parameters = inspect.signature(DagsterPostgresStorage.__init__).parameters
    assert {"inst_data", "postgres_url", "should_autocreate_tables", "token_provider"} <= set(
        parameters)


def test_the_sqlite_event_log_still_connects_as_engines_kept_replaces(tmp_path: Path):
    """pipelines/sqlite_files.engines_kept stands in for the event log's `_connect` and uses
    its lock, its set of initialised files, its `_initdb` and its connection strings."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    storage = SqliteEventLogStorage(str(tmp_path))
    assert isinstance(storage._initialized_dbs, set)
    assert hasattr(storage._db_lock, "acquire")
    assert list(inspect.signature(storage._connect).parameters) == ["shard"]
    assert list(inspect.signature(storage._initdb).parameters)[0] == "engine"
    assert storage.conn_string_for_shard("x").startswith("sqlite:///")


def test_the_table_and_columns_our_delete_touches_exist(tmp_path: Path):
    """assets/client_health.py deletes a client's runless verdict from Dagster's own
    asset_check_executions by (asset_key, check_name, run_id, partition)."""
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable

    used = {"asset_key", "check_name", "run_id", "partition"}
    assert AssetCheckExecutionsTable.name == "asset_check_executions"
    assert used <= set(AssetCheckExecutionsTable.c.keys())
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        with instance.event_log_storage.index_connection() as conn:  # type: ignore[attr-defined]
            columns = {c["name"] for c in db.inspect(conn).get_columns("asset_check_executions")}
        assert used <= columns  # in the database Dagster created, not only in its model


def test_a_second_runless_verdict_replaces_the_first(tmp_path: Path):
    """What the DELETE is for, and the partition info the freshness sensor reads back."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus as Status,
    )

    from assets.client_health import FRESHNESS_CHECK_KEY, FRESHNESS_KEY, report_check

    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        for passed in (True, False):
            report_check(instance, FRESHNESS_CHECK_KEY, "acme", FRESHNESS_KEY, passed=passed)
        infos = instance.event_log_storage.get_asset_check_partition_info(
            [FRESHNESS_CHECK_KEY], partition_keys=["acme"])
    assert [(i.partition_key, i.latest_execution_status) for i in infos] == [
        ("acme", Status.FAILED)]
    assert all(hasattr(info, "is_current") for info in infos)


def test_without_the_delete_a_second_runless_verdict_still_fails(tmp_path: Path):
    """Why the DELETE exists. The day this fails, Dagster takes a second runless verdict for
    a partition by itself: drop _forget_runless_verdict and its private table import."""
    key = AssetCheckKey(AssetKey(["canary"]), "check")
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        verdict = {"asset_key": key.asset_key, "check_name": key.name, "partition": "acme"}
        instance.report_runless_asset_event(AssetCheckEvaluation(passed=True, **verdict))
        with pytest.raises(db.exc.IntegrityError):
            instance.report_runless_asset_event(AssetCheckEvaluation(passed=False, **verdict))


def test_an_asset_page_lists_the_schedules_of_the_batch_job():
    """pipelines/batch_assets.py: `JobDefinition._copy(asset_layer=AssetLayer.for_external_job(
    keys))` makes the op job one of the assets' jobs, which is how Dagster finds the schedules
    an asset page lists (RemoteRepository.get_schedules_targeting); the job stays an op job."""
    from dagster._core.remote_representation.external import RemoteRepository
    from dagster._core.remote_representation.external_data import asset_node_snaps_from_repo

    from pipelines.batches import BATCH_JOB_NAME
    from pipelines.definitions import defs

    assert hasattr(RemoteRepository, "get_schedules_targeting")
    snaps = {s.asset_key.to_user_string(): s for s in asset_node_snaps_from_repo(
        defs.get_repository_def())}
    assert BATCH_JOB_NAME in snaps["stripe/charges"].job_names
    assert BATCH_JOB_NAME in snaps["reporting/mrr_daily"].job_names
    assert BATCH_JOB_NAME not in snaps["stripe/clients_needing_reconnect"].job_names
    assert not defs.resolve_job_def(BATCH_JOB_NAME).is_asset_job


def test_a_known_failure_is_a_failure_without_a_stack_trace(tmp_path: Path):
    """assets/known_failure.py: Dagster keeps the error a DagsterUserCodeProcessError carries
    (serializable_error_info_from_exc_info), and still treats the exception as a Failure."""
    from dagster import job, op

    from assets.known_failure import KnownFailure

    @op
    def refuses() -> None:
        raise KnownFailure("Stripe rejected the key.\n  1. Reconnect.", metadata={"client": "c"})

    @job
    def canary_failure_job() -> None:
        refuses()

    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        result = canary_failure_job.execute_in_process(instance=instance, raise_on_error=False)
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert failure.user_failure_data.description == "Stripe rejected the key.\n  1. Reconnect."
    assert failure.user_failure_data.metadata["client"].value == "c"
    assert failure.error.message == failure.user_failure_data.description
    assert failure.error.stack == [] and failure.error.cause is None  # what the UI prints


def _random_cron_lines(count: int, seed: int = 11) -> list[str]:
    """Lines in engine/cron.py's grammar, edge forms included, some out of range."""
    rng = random.Random(seed)
    names = {3: ["JAN", "mar", "DEC"], 4: ["SUN", "mon", "SAT"]}
    highs = [59, 23, 31, 12, 7]

    def item(field: int) -> str:
        high, low = highs[field], 1 if field in (2, 3) else 0
        choice = rng.randrange(7)
        number = lambda: str(rng.randint(low, high + 1))  # noqa: E731 (sometimes one too high)
        if choice == 0:
            return "*"
        if choice == 1:
            return f"*/{rng.randint(0, high)}"
        if choice == 2:
            return f"{number()}-{number()}"
        if choice == 3:
            return f"{number()}/{rng.randint(1, 20)}"
        if choice == 4 and field in names:
            return rng.choice(names[field])
        if choice == 5:
            return ",".join(number() for _ in range(rng.randint(2, 3)))
        return number()

    return [" ".join(item(field) for field in range(5)) for _ in range(count)]


def test_every_cron_line_clients_yaml_takes_is_one_dagster_schedules_take():
    """engine/cron.py reads clients.yaml's `schedule` without Dagster; a line it accepts must
    never stop the Definitions from loading (pipelines/schedules.py builds one per line)."""
    from dagster import ScheduleDefinition, job, op

    from engine.cron import ALIASES, CronError, parse_cron

    @op
    def noop() -> None:
        pass

    @job
    def canary_job() -> None:
        noop()

    taken = 0
    for line in [*ALIASES, "0 0 29 2 *", "0 0 * * 7", *_random_cron_lines(400)]:
        try:
            ours = parse_cron(line).line
        except CronError:
            continue
        taken += 1
        ScheduleDefinition(job=canary_job, cron_schedule=ours)  # raises if Dagster refuses
    assert taken > 100  # the corpus did exercise the parser
