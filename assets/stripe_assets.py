"""The Stripe assets: one asset per stream table, all filled by one subsettable op per client.

One op per client run (not one per stream) so that every stream shares the account's
single rate limiter and the credential check runs once, first.
"""


import contextlib
import warnings
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetSpec,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    multi_asset,
)
from pydantic import Field

from assets.client_health import (
    BALANCE_KEY,
    CREDENTIAL_CHECK,
    CREDENTIAL_CHECK_KEY,
    refresh_reconnect_entry,
    report_freshness,
)
from assets.handover import taken_over
from assets.known_failure import KnownFailure
from assets.metadata import column_schema
from assets.partitions import clients_partitions
from engine.connection_store import ClientConnection, ClientNotConnected, ConnectionStore
from engine.credentials import record_check_outcome
from engine.failures import CredentialFailure, StripeAccessError
from engine.progress import report_progress
from engine.reporting.checked import checked_without_build, no_build_due
from engine.streams import (
    BALANCE_COLUMNS,
    STREAMS,
    ChildSpec,
    StreamSpec,
    resolve_streams,
)
from engine.stripe_api import StripeAccount
from engine.sync import StreamResult, SyncReport, sync_client
from engine.user_errors import explain
from engine.warehouse import (
    BALANCE_DESCRIPTION,
    Warehouse,
    child_columns,
    child_description,
    stream_columns,
    stream_description,
)
from resources.dagster_resources import StripeResource, WarehouseResource

STRIPE_GROUP = "stripe"


class SyncConfig(Config):
    """The options of one client's sync run (the CLI's `--full-refresh` and `--streams`)."""

    full_refresh: bool = Field(
        default=False,
        description="List every object again instead of applying changes since the last sync.")
    streams: list[str] = Field(
        default_factory=list,
        description="The streams this run syncs (e.g. ['charges', 'subscriptions']), as the "
        "CLI's --streams; empty: the selected ones. Must match the selected assets; a stream "
        "brings its child tables (subscriptions: subscription_items; invoices: "
        "invoice_line_items).")


def stream_asset_key(spec: StreamSpec) -> AssetKey:
    return AssetKey(["stripe", spec.table])


# The credential check hangs on stripe/balance alone: one verdict per client run. A copy on
# each of the 13 Stripe assets would add 36 Dagster events (planned, output, evaluation) to
# every client run (102 today), the bookkeeping that dominates a no-change run. Each other
# Stripe asset says where its key's verdict is, with a link to it.
CREDENTIAL_CHECK_NOTE = (f" Its client's key is checked first in every sync: see the "
                         f"{CREDENTIAL_CHECK} check on stripe/balance (one result per client).")
CREDENTIAL_CHECK_LINK = {"credential_check": MetadataValue.url(
    f"/assets/stripe/balance?view=checks&checkDetail={CREDENTIAL_CHECK}")}


def _stream_asset_spec(spec: StreamSpec) -> AssetSpec:
    columns = stream_columns(spec)
    return AssetSpec(
        key=stream_asset_key(spec),
        description=stream_description(spec) + CREDENTIAL_CHECK_NOTE,
        group_name=STRIPE_GROUP,
        kinds={"stripe", "duckdb"},
        skippable=True,
        metadata={
            "dagster/column_schema": column_schema(columns),
            "dagster/table_name": f"stripe.{spec.table}",
            "stripe_endpoint": spec.endpoint,
            "event_types": ", ".join(spec.event_types) or "(none: immutable objects)",
            **CREDENTIAL_CHECK_LINK,
        },
    )


def _child_asset_spec(spec: StreamSpec, child: ChildSpec) -> AssetSpec:
    return AssetSpec(
        key=AssetKey(["stripe", child.table]),
        description=child_description(spec, child) + CREDENTIAL_CHECK_NOTE,
        group_name=STRIPE_GROUP,
        kinds={"stripe", "duckdb"},
        skippable=True,
        metadata={
            "dagster/column_schema": column_schema(child_columns(child)),
            "dagster/table_name": f"stripe.{child.table}",
            **CREDENTIAL_CHECK_LINK,
        },
    )


CHILD_SPECS = [(spec, child) for spec in STREAMS for child in spec.children]

BALANCE_SPEC = AssetSpec(
    key=BALANCE_KEY,
    description=f"{BALANCE_DESCRIPTION} The credential check runs first and is attached here.",
    group_name=STRIPE_GROUP,
    kinds={"stripe", "duckdb"},
    skippable=True,
    metadata={
        "dagster/column_schema": column_schema(BALANCE_COLUMNS),
        "dagster/table_name": "stripe.balance",
    },
)


def _stream_metadata(result: StreamResult) -> dict[str, Any]:
    cursor = (
        datetime.fromtimestamp(result.created_cursor, UTC).isoformat()
        if result.created_cursor else ""
    )
    return {
        "rows_inserted": result.inserted,
        "rows_updated": result.updated,
        "rows_deleted": result.deleted,
        "events_applied": result.events_applied,
        "api_requests": result.requests,
        "cursor": cursor,
        "full_refresh": result.full_refresh_reason or "no (incremental)",
        "seconds": round(result.seconds, 2),
        "skipped": result.skipped or "",
    }


@contextlib.contextmanager
def explained_errors() -> Iterator[None]:
    """A full disk, a read-only folder or a damaged warehouse fails the step with one line
    saying what to do (engine.user_errors), not a traceback; anything else is a bug."""
    try:
        yield
    except Failure:
        raise
    except Exception as error:
        problem = explain(error)
        if problem is None:
            raise
        raise KnownFailure(description=problem.message, allow_retries=False,
                      metadata={"error_type": MetadataValue.text(type(error).__name__)}) from None


def _record_key_works(store: ConnectionStore, account: StripeAccount, report: SyncReport,
                      connection: ClientConnection | None) -> None:
    # The client's "last sync" moves only once its reporting tables are built from it.
    if connection is None and report.account_id:
        # A client whose key is in the environment: the store tracks its health like any
        # other's, and never holds the key.
        store.save_env_connection(account.client_id, account_id=report.account_id,
                                  livemode=account.livemode)
    elif connection is not None:
        # The account fills a client stored without one (an old bug): the guard is back.
        record_check_outcome(store, account.client_id, account_id=report.account_id or None)


def _credential_failure(context: AssetExecutionContext, stripe: StripeResource,
                        warehouse: WarehouseResource, failure: CredentialFailure) -> KnownFailure:
    # A client never synced from the environment has no row to mark; the run still fails.
    with stripe.store() as store, contextlib.suppress(ClientNotConnected):
        record_check_outcome(store, failure.client_id or context.partition_key, failure)
    context.log.error(f"Credential check failed: {failure.message}")
    _publish_health(context, stripe, warehouse)
    return KnownFailure(
        description=f"{failure.guidance()}",
        metadata={k: MetadataValue.text(v) for k, v in failure.metadata().items()},
        allow_retries=False,
    )


def _credential_check_spec() -> AssetCheckSpec:
    # Partitioned checks are a preview in Dagster 1.13: the warning would reach every CLI user.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(
            CREDENTIAL_CHECK, asset=BALANCE_KEY, partitions_def=clients_partitions,
            description="Stripe accepts the client's key and it belongs to the client's "
            "account: one result per client (partition).",
        )


def _chosen_specs(context: AssetExecutionContext, config: SyncConfig) -> list[StreamSpec]:
    """The streams this run syncs: those selected in Dagster (a stream or a child table).

    The config's `streams` must name the same streams: a selected asset left unsynced would
    skip the reporting tables, and one claimed synced would lie about freshness."""
    selected = context.selected_asset_keys
    chosen = [
        spec for spec in STREAMS
        if stream_asset_key(spec) in selected
        or any(AssetKey(["stripe", child.table]) in selected for child in spec.children)
    ]
    try:
        named = resolve_streams(config.streams or None)
    except ValueError as error:
        raise KnownFailure(description=str(error), allow_retries=False) from None
    if config.streams and {s.name for s in named} != {s.name for s in chosen}:
        raise KnownFailure(
            description=f"The run's config names the streams {', '.join(config.streams)} but "
            f"the run selects {', '.join(s.name for s in chosen) or 'no stream'}. Select "
            "just those assets (Materialize selected) or leave `streams` empty.",
            allow_retries=False)
    return chosen


@multi_asset(
    name="stripe_sync",
    specs=[
        *(_stream_asset_spec(spec) for spec in STREAMS),
        *(_child_asset_spec(spec, child) for spec, child in CHILD_SPECS),
        BALANCE_SPEC,
    ],
    check_specs=[_credential_check_spec()],
    partitions_def=clients_partitions,
    can_subset=True,
    description="Pulls the client's Stripe objects into DuckDB incrementally (events for "
    "updates and deletions, new objects since the cursor), after checking the key.",
)
def stripe_sync(
    context: AssetExecutionContext, config: SyncConfig, stripe: StripeResource,
    warehouse: WarehouseResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    client_id = context.partition_key
    specs = _chosen_specs(context, config)
    # A batch run that checked this client a moment ago hands over what its sync found.
    checked = taken_over(client_id, specs, config.full_refresh,
                         context.selected_asset_keys)
    if checked is not None:
        account, connection = checked.account, checked.connection
    else:
        try:
            account, connection = stripe.account_for(client_id)
        except ClientNotConnected as missing:
            raise KnownFailure(description=str(missing), allow_retries=False) from None
    try:
        report = checked.outcome() if checked is not None else _sync(
            context, stripe, warehouse, account, connection, specs, config)
    except CredentialFailure as failure:
        if _checking(context):
            yield _failed_check(failure)
        raise _credential_failure(context, stripe, warehouse, failure) from None
    except StripeAccessError as error:  # 429s, outages: the key is fine
        _publish_health(context, stripe, warehouse)
        raise _access_failure(error) from None
    with stripe.store() as store:
        quiet = settle_check(store, warehouse.open(), account, connection, report,
                             full_refresh=config.full_refresh)
    if quiet:  # observed, not materialized: Dagster skips the reporting step
        for key, metadata in observations(context.selected_asset_keys, specs, report):
            context.log_event(AssetObservation(asset_key=key, metadata=metadata))
    else:
        yield from _materializations(context, specs, report)
    if _checking(context):  # after the balance: the check judges this materialization
        yield AssetCheckResult(
            check_name=CREDENTIAL_CHECK, asset_key=BALANCE_KEY, passed=True,
            metadata=credential_passed(account, report))
    # A sync that fails, or finds nothing new, skips the reporting tables and their
    # freshness check: say it here (reported only where the verdict changed).
    _publish_health(context, stripe, warehouse if report.errors or quiet else None)
    if report.errors:
        raise _stream_errors_failure(report.errors)


def credential_passed(account: StripeAccount, report: SyncReport) -> dict[str, str]:
    """The credential check's metadata when Stripe took the key."""
    return {"account": report.account_id or "", "masked_key": account.masked_key}


def settle_check(store: ConnectionStore, warehouse: Warehouse, account: StripeAccount,
                 connection: ClientConnection | None, report: SyncReport, *,
                 full_refresh: bool = False, checked_at: datetime | None = None) -> bool:
    """After a sync: the key recorded as working; with nothing new and no reporting build
    due (the day has not turned), the client recorded as checked now. Whether so: then
    nothing is materialized. One rule for a client run and a batch run's check.

    With `checked_at`, the client is judged at that time and not marked: the caller (a
    batch run) marks its checked clients together (engine.reporting.checked)."""
    _record_key_works(store, account, report, connection)
    if full_refresh or report.errors or not report.nothing_new:
        return False
    with explained_errors():
        if checked_at is not None:
            return no_build_due(store, warehouse, account.client_id, checked_at)
        return checked_without_build(store, warehouse, account.client_id)


def _publish_health(context: AssetExecutionContext, stripe: StripeResource,
                    warehouse: WarehouseResource | None) -> None:
    """Refresh the reconnect list, and the client's freshness verdict when `warehouse` is
    given. Health reporting never turns a sync's outcome into another one."""
    try:
        with stripe.store() as store:
            refresh_reconnect_entry(context.instance, store, context.partition_key)
        if warehouse is not None:
            report_freshness(context.instance, [context.partition_key], warehouse.open())
    except Exception as error:  # noqa: BLE001 (the next client_health tick tries again)
        context.log.warning(f"Client health not updated: {type(error).__name__}: {error}")


def _sync(context: AssetExecutionContext, stripe: StripeResource, warehouse: WarehouseResource,
          account: StripeAccount, connection: ClientConnection | None, specs: list[StreamSpec],
          config: SyncConfig) -> SyncReport:
    return sync_account(account, connection, warehouse.open(), specs, log=context.log.info,
                        concurrency=stripe.concurrency, full_refresh=config.full_refresh,
                        include_balance=BALANCE_KEY in context.selected_asset_keys)


def sync_account(account: StripeAccount, connection: ClientConnection | None,
                 warehouse: Warehouse, specs: list[StreamSpec], *, log: Callable[[str], None],
                 concurrency: int, full_refresh: bool = False,
                 include_balance: bool = True) -> SyncReport:
    """The engine's sync of one client with its stored guards (the account it must be, the
    permissions it was connected without): a client run's and a batch run's check."""
    def progress(client: str, stream: str, rows: int, requests: int) -> None:
        # A stream with nothing new says so in its materialization's metadata: a log line
        # each is 9 more events to store per no-change client run (issue 21).
        if rows:
            log(f"{client}/{stream}: {rows} rows landed, {requests} requests")
        report_progress(client, stream, rows, requests)

    with explained_errors():
        return sync_client(
            account, warehouse, specs,
            expected_account_id=connection.account_id if connection else None,
            full_refresh=full_refresh, include_balance=include_balance,
            concurrency=concurrency, progress=progress,
            accepted_missing=frozenset(connection.missing_permissions if connection else ()),
        )


def observations(selected: AbstractSet[AssetKey], specs: list[StreamSpec],
                 report: SyncReport) -> Iterator[tuple[AssetKey, dict[str, Any]]]:
    """What a check that found nothing new says of each selected asset: when it was
    checked, the requests it cost, the cursor (the Dagster UI shows it as an observation)."""
    checked = datetime.now(UTC).isoformat(timespec="seconds")
    if BALANCE_KEY in selected:
        yield BALANCE_KEY, {"checked_at": checked, "changed": False,
                            "api_requests": report.requests,
                            "seconds": round(report.seconds, 2)}
    for spec in specs:
        result = report.streams[spec.name]
        keys = [stream_asset_key(spec), *(AssetKey(["stripe", c.table]) for c in spec.children)]
        for key in keys:
            if key in selected:
                yield key, {"checked_at": checked, "changed": False,
                            **_stream_metadata(result)}


def _access_failure(error: StripeAccessError) -> KnownFailure:
    facts = {k: v for k, v in error.metadata().items() if k != "masked_key"}
    return KnownFailure(description=error.guidance(),
                   metadata={k: MetadataValue.text(v) for k, v in facts.items()},
                   allow_retries=True)


def _checking(context: AssetExecutionContext) -> bool:
    return CREDENTIAL_CHECK_KEY in context.selected_asset_check_keys


def _failed_check(failure: CredentialFailure) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=CREDENTIAL_CHECK, asset_key=BALANCE_KEY, passed=False,
        severity=AssetCheckSeverity.ERROR, description=failure.guidance(),
        metadata={k: MetadataValue.text(v) for k, v in failure.metadata().items()},
    )


def _materializations(context: AssetExecutionContext, specs: list[StreamSpec],
                      report: SyncReport) -> Iterator[MaterializeResult]:
    """One result per selected asset that landed; a subset may leave out a child table."""
    selected = context.selected_asset_keys
    if BALANCE_KEY in selected:
        yield MaterializeResult(
            asset_key=BALANCE_KEY,
            metadata={"currencies": report.balance_rows, "api_requests": report.requests,
                      "skipped": report.balance_skipped or ""},
        )
    for spec in specs:
        result = report.streams[spec.name]
        if result.error is not None:
            continue
        if result.skipped:
            # As complete as the key allows: the reporting tables still build from the rest.
            context.log.warning(f"{context.partition_key}/{spec.name} skipped: {result.skipped}")
        if stream_asset_key(spec) in selected:
            yield MaterializeResult(asset_key=stream_asset_key(spec),
                                    metadata=_stream_metadata(result))
        for child in spec.children:
            if AssetKey(["stripe", child.table]) in selected:
                yield MaterializeResult(asset_key=AssetKey(["stripe", child.table]),
                                        metadata={"parent_rows_written": result.rows_landed})


def _stream_errors_failure(errors: list[StripeAccessError]) -> KnownFailure:
    lines = [f"- {error.message}" for error in errors]
    return KnownFailure(
        description="Some streams could not be synced; the others landed:\n" + "\n".join(lines),
        metadata={"failed_streams": len(errors)},
        allow_retries=True,
    )
