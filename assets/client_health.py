"""Each client's health in Dagster: one verdict per client (partition) on the credential and
freshness checks, and one asset listing the clients that need a new Stripe key.

Runs judge a client as they sync it. Between runs, the daily credential watch and the
`client_health` sensor report verdicts without a run (`report_runless_asset_event`), aimed
at the client's latest materialization so Dagster counts them as current.
"""

import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    asset,
    asset_check,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable

from assets.partitions import clients_partitions
from engine.client_config import client_config
from engine.connection_store import ClientConnection, ConnectionState, ConnectionStore
from engine.freshness import freshness_problem, freshness_problems
from engine.warehouse import Warehouse
from resources.dagster_resources import StripeResource, WarehouseResource

HEALTH_GROUP = "client_health"
BALANCE_KEY = AssetKey(["stripe", "balance"])
CREDENTIAL_CHECK = "stripe_credentials_valid"
CREDENTIAL_CHECK_KEY = AssetCheckKey(BALANCE_KEY, CREDENTIAL_CHECK)
FRESHNESS_KEY = AssetKey(["reporting", "freshness"])
FRESHNESS_CHECK = "figures_fresh"
FRESHNESS_CHECK_KEY = AssetCheckKey(FRESHNESS_KEY, FRESHNESS_CHECK)
RECONNECT_KEY = AssetKey(["stripe", "clients_needing_reconnect"])
RECONNECT_TABLE = "clients_needing_reconnect"
# Fails naming the clients: the list's asset stays green (it was built), its check does not.
RECONNECT_CHECK = "every_client_key_accepted"
RECONNECT_CHECK_KEY = AssetCheckKey(RECONNECT_KEY, RECONNECT_CHECK)
HISTORY_LIMIT = 1000  # checks read back to find when a client's failing run began


def latest_target(instance: DagsterInstance, key: AssetKey,
                  client_id: str | None) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The client's (None: the unpartitioned asset's) latest materialization of `key`: a
    verdict aimed at it is current."""
    partitions = [client_id] if client_id is not None else None
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id, run_id=records[0].run_id,
        timestamp=records[0].timestamp)


def report_check(instance: DagsterInstance, key: AssetCheckKey, client_id: str,
                 target_asset: AssetKey, **verdict: Any) -> None:
    """Record one client's verdict on a partitioned check without a run."""
    _forget_runless_verdict(instance, key, client_id)
    instance.report_runless_asset_event(AssetCheckEvaluation(
        asset_key=key.asset_key, check_name=key.name, partition=client_id,
        target_materialization_data=latest_target(instance, target_asset, client_id),
        **verdict))


def _forget_runless_verdict(instance: DagsterInstance, key: AssetCheckKey,
                            client_id: str | None) -> None:
    """Drop the client's previous verdict recorded without a run, if any.

    Dagster 1.13 files a runless verdict under (check, run id "", partition), a key its unique
    index takes once: a client's second verdict between syncs would fail (and with it every
    later health tick). Only the latest runless verdict is kept; the events stay in the log.
    """
    table = AssetCheckExecutionsTable
    with instance.event_log_storage.index_connection() as conn:  # type: ignore[attr-defined]
        conn.execute(table.delete().where(
            (table.c.asset_key == key.asset_key.to_string()) & (table.c.check_name == key.name)
            & (table.c.run_id == "") & (table.c.partition == client_id)))


# -- the credential check between syncs ---------------------------------------------------


def credential_verdict(connection: ClientConnection) -> dict[str, Any]:
    """What the credential check says about a client the store has just judged."""
    facts = {"client": connection.client_id, "masked_key": connection.masked_key or "",
             "account": connection.account_id, "stripe_error_code": connection.error_code or "",
             "stripe_request_id": connection.request_id or ""}
    metadata = {k: MetadataValue.text(v) for k, v in facts.items() if v}
    if connection.connected:
        return {"passed": True, "metadata": metadata}
    steps = [f"  {n}. {step}" for n, step in enumerate(connection.steps, start=1)]
    return {"passed": False, "severity": AssetCheckSeverity.ERROR, "metadata": metadata,
            "description": "\n".join([connection.reason or "Stripe refused the key.", *steps])}


def report_credential_check(instance: DagsterInstance, connection: ClientConnection) -> None:
    report_check(instance, CREDENTIAL_CHECK_KEY, connection.client_id, BALANCE_KEY,
                 **credential_verdict(connection))


# -- freshness ----------------------------------------------------------------------------


def freshness_verdict(client_id: str, problem: str | None) -> dict[str, Any]:
    """Late figures warn (WARN): a late sync is not a dead key."""
    config = client_config(client_id)
    metadata = {"schedule": MetadataValue.text(config.schedule),
                "stale_after": MetadataValue.text(str(config.stale_after))}
    if problem is None:
        return {"passed": True, "metadata": metadata}
    return {"passed": False, "severity": AssetCheckSeverity.WARN, "description": problem,
            "metadata": metadata}


def _freshness_check_spec_kwargs() -> dict[str, Any]:
    return {
        "asset": FRESHNESS_KEY, "name": FRESHNESS_CHECK, "partitions_def": clients_partitions,
        "description": "The client's figures were built recently enough for its own schedule "
        "(clients.yaml; hourly by default), and its last sync did not fail: the rule that "
        "turns the widgets `stale`. Warns, one result per client (partition).",
    }


# Partitioned checks are a preview in Dagster 1.13: the warning would reach every CLI user.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PreviewWarning)

    @asset_check(**_freshness_check_spec_kwargs())
    def figures_fresh(context: AssetCheckExecutionContext,
                      warehouse: WarehouseResource) -> AssetCheckResult:
        client_id = context.partition_key
        with warehouse.open().reader() as conn:
            problem = freshness_problem(conn, client_id, datetime.now(UTC))
        return AssetCheckResult(**freshness_verdict(client_id, problem))


def _current_verdicts(instance: DagsterInstance, clients: list[str]) -> dict[str, bool]:
    """client -> passed, for the clients whose latest freshness verdict is still current."""
    infos = instance.event_log_storage.get_asset_check_partition_info(
        [FRESHNESS_CHECK_KEY], partition_keys=clients)
    statuses = {AssetCheckExecutionRecordStatus.SUCCEEDED: True,
                AssetCheckExecutionRecordStatus.FAILED: False}
    return {info.partition_key: statuses[info.latest_execution_status] for info in infos
            if info.is_current and info.latest_execution_status in statuses
            and info.partition_key is not None}


def report_freshness(instance: DagsterInstance, clients: Iterable[str], warehouse: Warehouse,
                     now: datetime | None = None,
                     budget_seconds: float | None = None) -> list[str]:
    """Report the freshness verdict of each client whose verdict changed (or was aimed at an
    older build); the clients reported. With `budget_seconds`, stop reporting once it is
    spent (newly failing clients first): the next call reports the rest."""
    clients = list(clients)
    if not clients:
        return []
    now = now or datetime.now(UTC)
    known = _current_verdicts(instance, clients)
    with warehouse.reader() as conn:
        problems = freshness_problems(conn, clients, now)
    changed = [c for c in clients if known.get(c) != (problems[c] is None)]
    changed.sort(key=lambda client: problems[client] is None)  # bad news first
    started = time.monotonic()
    reported = []
    for client in changed:
        report_check(instance, FRESHNESS_CHECK_KEY, client, FRESHNESS_KEY,
                     **freshness_verdict(client, problems[client]))
        reported.append(client)
        if budget_seconds is not None and time.monotonic() - started > budget_seconds:
            break
    return reported


# -- the clients needing a reconnect ----------------------------------------------------


@dataclass(frozen=True)
class ReconnectRow:
    client: str
    account: str
    since: datetime | None
    reason: str
    steps: tuple[str, ...]


def _failing_since(store: ConnectionStore, connection: ClientConnection) -> datetime | None:
    """When the client's current run of failed checks began."""
    since = connection.last_check_at
    for record in store.check_history(connection.client_id, limit=HISTORY_LIMIT):
        if record.ok:
            break
        since = record.checked_at
    return since


def reconnect_rows(store: ConnectionStore) -> list[ReconnectRow]:
    """Every stored client whose key Stripe refused, oldest failure first."""
    rows = [
        ReconnectRow(c.client_id, c.account_id, _failing_since(store, c),
                     c.reason or "Stripe refused the client's key.", c.steps)
        for c in store.list() if c.state is ConnectionState.FAILED
    ]
    return sorted(rows, key=lambda r: (r.since or datetime.min.replace(tzinfo=UTC), r.client))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reconnect_markdown(rows: list[ReconnectRow]) -> str:
    if not rows:
        return "No client needs a reconnect: every stored key was accepted at its last check."
    lines = ["| client | account | since | reason | steps |", "|---|---|---|---|---|"]
    for row in rows:
        since = f"{row.since:%Y-%m-%d %H:%M} UTC" if row.since else ""
        steps = " ".join(f"{n}. {step}" for n, step in enumerate(row.steps, start=1))
        lines.append(f"| {row.client} | {row.account} | {since} | {_cell(row.reason)} | "
                     f"{_cell(steps)} |")
    return "\n".join(lines)


def reconnect_metadata(store: ConnectionStore) -> dict[str, MetadataValue]:
    rows = reconnect_rows(store)
    return {
        RECONNECT_TABLE: MetadataValue.md(reconnect_markdown(rows)),
        "count": MetadataValue.int(len(rows)),
        "clients": MetadataValue.text(", ".join(r.client for r in rows)),
    }


def _published_table(instance: DagsterInstance) -> str | None:
    event = instance.get_latest_materialization_event(RECONNECT_KEY)
    materialization = event.asset_materialization if event else None
    value = materialization.metadata.get(RECONNECT_TABLE) if materialization else None
    return getattr(value, "value", None)


def refresh_reconnect_list(instance: DagsterInstance, store: ConnectionStore) -> bool:
    """Materialize the list again (without a run) if it changed; whether it did."""
    metadata = reconnect_metadata(store)
    if _published_table(instance) == metadata[RECONNECT_TABLE].value:
        return False
    instance.report_runless_asset_event(AssetMaterialization(
        asset_key=RECONNECT_KEY, metadata=metadata,
        description=f"{metadata['count'].value} client(s) need a new Stripe key."))
    report_reconnect_check(instance, metadata)
    return True


def judge_unjudged_list(instance: DagsterInstance, store: ConnectionStore) -> bool:
    """A list published before its check existed (an upgrade) gets its verdict now: the
    client_health sensor asks each tick (one query), not every client's run."""
    if instance.get_latest_asset_check_evaluation_record(RECONNECT_CHECK_KEY) is not None:
        return False
    if _published_table(instance) is None:
        return False  # no list yet: its first refresh judges it
    report_reconnect_check(instance, reconnect_metadata(store))
    return True


def reconnect_verdict(metadata: dict[str, MetadataValue]) -> dict[str, Any]:
    """The check on the list: fails (ERROR) naming every client that needs a new key."""
    count, clients = metadata["count"].value, metadata["clients"].value
    facts = {"count": metadata["count"], "clients": metadata["clients"]}
    if not count:
        return {"passed": True, "metadata": facts,
                "description": "Every stored key was accepted at its last check."}
    return {"passed": False, "severity": AssetCheckSeverity.ERROR, "metadata": facts,
            "description": f"{count} client(s) need a new Stripe key: {clients}. Run "
            "`stripe-reports connect CLIENT` for each (this list's metadata has the steps)."}


def report_reconnect_check(instance: DagsterInstance,
                           metadata: dict[str, MetadataValue]) -> None:
    """The verdict on the list just published, aimed at it (no run)."""
    _forget_runless_verdict(instance, RECONNECT_CHECK_KEY, None)
    instance.report_runless_asset_event(AssetCheckEvaluation(
        asset_key=RECONNECT_KEY, check_name=RECONNECT_CHECK,
        target_materialization_data=latest_target(instance, RECONNECT_KEY, None),
        **reconnect_verdict(metadata)))


def refresh_reconnect_entry(instance: DagsterInstance, store: ConnectionStore,
                            client_id: str) -> bool:
    """After one client's run: the list again only if that client's place on it may have
    changed (it is failing, or it was listed). A healthy client that was not listed costs
    one look at the published list, not a pass over every client (which made a cycle of
    runs grow with the square of the clients)."""
    return refresh_reconnect_entries(instance, store, [client_id])


def refresh_reconnect_entries(instance: DagsterInstance, store: ConnectionStore,
                              clients: Iterable[str]) -> bool:
    """refresh_reconnect_entry for several clients at once (a batch run's checked clients):
    one look at the published list, and the list again at most once."""
    published = _published_clients(instance)
    for client_id in clients:
        connection = store.get(client_id)
        failing = connection is not None and connection.state is ConnectionState.FAILED
        if published is None or failing or client_id in published:
            return refresh_reconnect_list(instance, store)
    return False


def _published_clients(instance: DagsterInstance) -> set[str] | None:
    """The clients on the published list (None: never published)."""
    event = instance.get_latest_materialization_event(RECONNECT_KEY)
    materialization = event.asset_materialization if event else None
    if materialization is None:
        return None
    value = getattr(materialization.metadata.get("clients"), "value", "") or ""
    return {name.strip() for name in value.split(",") if name.strip()}


@asset(
    key=RECONNECT_KEY,
    group_name=HEALTH_GROUP,
    kinds={"stripe"},
    description="The clients whose Stripe key was refused, with since when, why and the steps "
    "to reconnect each (metadata `clients_needing_reconnect`). Refreshed by the daily "
    "credential watch, after every sync and by the client_health sensor.",
)
def clients_needing_reconnect(stripe: StripeResource) -> MaterializeResult:
    with stripe.store() as store:
        return MaterializeResult(metadata=reconnect_metadata(store))


@asset_check(asset=RECONNECT_KEY, name=RECONNECT_CHECK,
             description="No client needs a reconnect: fails (ERROR) naming every client whose "
             "Stripe key was refused. Judged with each refresh of the list.")
def every_client_key_accepted(stripe: StripeResource) -> AssetCheckResult:
    with stripe.store() as store:
        return AssetCheckResult(**reconnect_verdict(reconnect_metadata(store)))


health_assets: list = [clients_needing_reconnect]
health_checks: list = [figures_fresh, every_client_key_accepted]
