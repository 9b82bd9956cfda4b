"""Each client's health in Dagster, on real runs against the sandbox: the freshness check per
client (judged against its own schedule, as the widgets are), the credential check between
syncs, and the list of clients needing a reconnect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    AssetCheckKey,
    DagsterInstance,
    build_sensor_context,
    partition_loading_context,
)
from dagster._core.event_api import PartitionKeyFilter

from assets.client_health import (
    CREDENTIAL_CHECK_KEY,
    FRESHNESS_CHECK_KEY,
    RECONNECT_CHECK_KEY,
    RECONNECT_KEY,
    RECONNECT_TABLE,
    report_freshness,
)
from assets.partitions import clients_partitions
from engine.connection_store import ConnectionStore
from engine.warehouse_factory import warehouse_from_settings
from pipelines.credential_watch import CHECK_JOB_NAME
from pipelines.definitions import defs
from pipelines.sensors import client_health_sensor
from reports.widgets import run_widget
from sandbox import AccountSpec

SMALL = {"charges": 8, "customers": 3, "subscriptions": 2, "products": 2, "history_days": 20}
FRESH_KEY = "rk_test_" + "Fresh" * 6


@pytest.fixture
def synced(home, sandbox_factory, tmp_path):
    """acme (hourly, the default) and globex (daily in clients.yaml), both connected and
    synced once through stripe_sync_job runs, as `stripe-reports sync` does."""
    from apps.launch import materialize_client
    from pipelines.instance import connect_and_register, get_instance

    (tmp_path / "clients.yaml").write_text('clients:\n  globex:\n    schedule: "0 6 * * *"\n')
    server = sandbox_factory([AccountSpec(name, **SMALL) for name in ("acme", "globex")])
    for name, account in server.world.accounts.items():
        connect_and_register(name, account.secret_key, api_base=server.base_url)
    for name in ("acme", "globex"):
        assert materialize_client(name).success
    return server, get_instance()


def statuses(instance: DagsterInstance, key: AssetCheckKey) -> dict[str, str]:
    """What the check's partitions tab shows: client -> status (current verdicts only)."""
    with partition_loading_context(dynamic_partitions_store=instance):
        state = instance.event_log_storage.get_asset_check_state(
            [(key, clients_partitions)])[key]
    return {client: status.value for status, subset in state.subsets.items()
            for client in subset.subset_value.get_partition_keys()}


def latest(instance: DagsterInstance, key: AssetCheckKey, client: str):
    record = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=1, partition_filter=PartitionKeyFilter(key=client))[0]
    return record.event.dagster_event.asset_check_evaluation_data


def reconnect_list(instance: DagsterInstance) -> tuple[int, str]:
    metadata = instance.get_latest_materialization_event(RECONNECT_KEY) \
        .asset_materialization.metadata
    return metadata["count"].value, metadata[RECONNECT_TABLE].value


def reconnect_check(instance: DagsterInstance):
    """The list's check as its asset page shows it: the latest verdict, aimed at the latest
    list (current) or not."""
    record = instance.get_latest_asset_check_evaluation_record(RECONNECT_CHECK_KEY)
    evaluation = record.event.dagster_event.asset_check_evaluation_data
    listed = instance.fetch_materializations(RECONNECT_KEY, limit=1).records[0]
    assert evaluation.target_materialization_data.storage_id == listed.storage_id
    return evaluation


def test_freshness_is_judged_per_client_against_its_own_schedule(synced):
    _server, instance = synced
    assert statuses(instance, FRESHNESS_CHECK_KEY) == {"acme": "SUCCEEDED", "globex": "SUCCEEDED"}
    warehouse = warehouse_from_settings()
    assert report_freshness(instance, ["acme", "globex"], warehouse) == []  # nothing changed

    later = datetime.now(UTC) + timedelta(hours=3)  # past hourly's limit, within daily's
    assert report_freshness(instance, ["acme", "globex"], warehouse, now=later) == ["acme"]

    assert statuses(instance, FRESHNESS_CHECK_KEY) == {"acme": "FAILED", "globex": "SUCCEEDED"}
    verdict = latest(instance, FRESHNESS_CHECK_KEY, "acme")
    assert verdict.severity.value == "WARN"  # a late sync is not a dead key
    widget = run_widget("acme", "mrr", now=later)
    assert widget.state == "stale" and verdict.description == widget.message
    assert "schedule (0 * * * *)" in verdict.description
    assert run_widget("globex", "mrr", now=later).state == "ok"
    assert report_freshness(instance, ["acme", "globex"], warehouse, now=later) == []


def test_a_clients_verdict_flips_between_syncs_again_and_again(synced):
    # Dagster keys a verdict recorded without a run by (check, "", partition): the second one
    # for a client failed with a unique-index violation, and every health tick after it.
    _server, instance = synced
    warehouse = warehouse_from_settings()
    later = datetime.now(UTC) + timedelta(hours=3)  # past acme's hourly schedule
    for _ in range(2):
        assert report_freshness(instance, ["acme"], warehouse, now=later) == ["acme"]
        assert statuses(instance, FRESHNESS_CHECK_KEY)["acme"] == "FAILED"
        assert report_freshness(instance, ["acme"], warehouse) == ["acme"]
        assert statuses(instance, FRESHNESS_CHECK_KEY)["acme"] == "SUCCEEDED"
    assert client_health_sensor(build_sensor_context(instance=instance)) is not None


def test_a_spent_budget_leaves_verdicts_for_the_next_tick(synced):
    _server, instance = synced
    warehouse = warehouse_from_settings()
    later = datetime.now(UTC) + timedelta(days=3)  # both late: acme hourly, globex daily
    # A budget spent at once still records one verdict, then stops (the sensor's 60 s limit).
    first = report_freshness(instance, ["globex", "acme"], warehouse, now=later, budget_seconds=0)
    assert len(first) == 1
    rest = report_freshness(instance, ["globex", "acme"], warehouse, now=later, budget_seconds=0)
    assert sorted(first + rest) == ["acme", "globex"]
    assert statuses(instance, FRESHNESS_CHECK_KEY) == {"acme": "FAILED", "globex": "FAILED"}


def test_a_revoked_key_is_listed_with_its_steps_until_a_good_reconnect(synced):
    from apps.launch import materialize_client
    from pipelines.instance import connect_and_register

    server, instance = synced
    server.world.revoke_key("globex")
    assert not materialize_client("globex").success

    assert statuses(instance, CREDENTIAL_CHECK_KEY) == {"acme": "SUCCEEDED", "globex": "FAILED"}
    assert statuses(instance, FRESHNESS_CHECK_KEY) == {"acme": "SUCCEEDED", "globex": "FAILED"}
    freshness = latest(instance, FRESHNESS_CHECK_KEY, "globex")
    assert freshness.severity.value == "WARN" and "failed: Stripe rejected the key" \
        in freshness.description
    with ConnectionStore.from_settings() as store:
        globex = store.get("globex")
    count, table = reconnect_list(instance)
    rows = [line for line in table.splitlines() if line.startswith("| globex |")]
    assert count == 1 and "| acme |" not in table and len(rows) == 1
    steps = " ".join(f"{n}. {step}" for n, step in enumerate(globex.steps, start=1))
    assert rows[0].startswith(f"| globex | {globex.account_id} | "
                              f"{globex.last_check_at:%Y-%m-%d %H:%M} UTC | {globex.reason} |")
    assert steps and steps in rows[0]
    assert server.world.accounts["globex"].secret_key not in table  # masked only
    # The list's asset is green (it was built); its check fails, naming the client.
    check = reconnect_check(instance)
    assert not check.passed and check.severity.value == "ERROR"
    assert check.description.startswith("1 client(s) need a new Stripe key: globex.")

    account = server.world.accounts["globex"]
    server.world.register_restricted(FRESH_KEY, account, frozenset())
    connect_and_register("globex", FRESH_KEY, api_base=server.base_url)
    assert materialize_client("globex").success

    assert reconnect_list(instance)[0] == 0
    assert "No client needs a reconnect" in reconnect_list(instance)[1]
    assert reconnect_check(instance).passed
    assert statuses(instance, CREDENTIAL_CHECK_KEY) == {"acme": "SUCCEEDED", "globex": "SUCCEEDED"}
    assert statuses(instance, FRESHNESS_CHECK_KEY) == {"acme": "SUCCEEDED", "globex": "SUCCEEDED"}


def test_the_daily_watch_gives_each_client_its_verdict_between_syncs(synced):
    server, instance = synced
    server.world.revoke_key("acme")  # after its last sync: only the watch can tell

    result = defs.get_job_def(CHECK_JOB_NAME).execute_in_process(
        instance=instance, raise_on_error=False)

    assert not result.success
    assert statuses(instance, CREDENTIAL_CHECK_KEY) == {"acme": "FAILED", "globex": "SUCCEEDED"}
    verdict = latest(instance, CREDENTIAL_CHECK_KEY, "acme")
    with ConnectionStore.from_settings() as store:
        acme = store.get("acme")
    assert verdict.severity.value == "ERROR"
    assert verdict.description.splitlines()[:2] == [acme.reason, f"  1. {acme.steps[0]}"]
    assert verdict.metadata["masked_key"].value == acme.masked_key
    count, table = reconnect_list(instance)
    assert count == 1 and table.splitlines()[2].startswith(f"| acme | {acme.account_id} |")
    assert "need a new Stripe key: acme." in reconnect_check(instance).description


def test_the_health_sensor_follows_a_reconnect_made_without_a_sync(synced):
    """`stripe-reports connect` alone runs nothing: the client_health sensor updates the list."""
    from dagster import build_sensor_context

    from apps.launch import materialize_client
    from pipelines.instance import connect_and_register
    from pipelines.sensors import client_health_sensor

    server, instance = synced
    server.world.revoke_key("acme")
    assert not materialize_client("acme").success
    server.world.register_restricted(FRESH_KEY, server.world.accounts["acme"], frozenset())
    connect_and_register("acme", FRESH_KEY, api_base=server.base_url)
    assert reconnect_list(instance)[0] == 1  # no run since the reconnect

    tick = client_health_sensor.evaluate_tick(build_sensor_context(instance=instance))

    assert tick.skip_message == "0 freshness verdict(s) changed; reconnect list refreshed."
    assert reconnect_list(instance)[0] == 0
    assert reconnect_check(instance).passed  # again and again: one runless verdict kept
    assert statuses(instance, FRESHNESS_CHECK_KEY)["acme"] == "FAILED"  # until a sync succeeds


def test_a_list_published_before_its_check_existed_is_judged_by_the_next_health_tick(synced):
    """After an upgrade the list is unchanged, so no refresh judges it: the sensor does."""
    from apps.launch import materialize_client
    from assets.client_health import _forget_runless_verdict

    server, instance = synced
    server.world.revoke_key("acme")
    assert not materialize_client("acme").success  # the list now names acme
    _forget_runless_verdict(instance, RECONNECT_CHECK_KEY, None)  # as an older version left it
    assert instance.get_latest_asset_check_evaluation_record(RECONNECT_CHECK_KEY) is None

    tick = client_health_sensor.evaluate_tick(build_sensor_context(instance=instance))

    assert tick.skip_message.endswith("reconnect list unchanged.")
    check = reconnect_check(instance)
    assert not check.passed and "need a new Stripe key: acme." in check.description
