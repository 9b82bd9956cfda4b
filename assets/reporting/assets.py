"""The reporting tables as Dagster assets: one per table, all built by one op per client.

One op (not one per table) because a client's tables are replaced in a single warehouse
transaction: the widgets never see MRR from one build beside revenue from another.
"""

import contextlib

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    multi_asset,
)

from assets.metadata import column_schema
from assets.partitions import clients_partitions
from assets.stripe_assets import explained_errors
from engine.connection_store import ClientNotConnected
from engine.reporting.build import build_reporting_tables, tables_due
from engine.reporting.checked import client_state
from engine.reporting.tables import REPORTING_TABLES, ReportingTable
from resources.dagster_resources import StripeResource, WarehouseResource

REPORTING_GROUP = "reporting"


def reporting_asset_key(table: ReportingTable) -> AssetKey:
    return AssetKey(["reporting", table.name])


def _spec(table: ReportingTable) -> AssetSpec:
    return AssetSpec(
        key=reporting_asset_key(table),
        description=f"{table.description} Built by engine/reporting/sql/{table.name}.sql.",
        group_name=REPORTING_GROUP,
        kinds={"duckdb"},
        deps=[AssetKey(["stripe", name]) for name in table.reads],
        skippable=True,  # built only when its inputs changed or the day turned
        metadata={
            "dagster/column_schema": column_schema(table.columns),
            "dagster/table_name": table.qualified,
            "build_mode": table.mode,
        },
    )


@multi_asset(
    name="reporting_tables",
    specs=[_spec(table) for table in REPORTING_TABLES],
    partitions_def=clients_partitions,
    description="Rebuild the client's reporting.* tables from its stripe.* rows: those whose "
    "inputs changed since the last build, all of them when the client's calendar day turned.",
)
def reporting_tables(context: AssetExecutionContext, warehouse: WarehouseResource,
                     stripe: StripeResource):
    client_id = context.partition_key
    with stripe.store() as store:  # reporting.clients says how the client stands
        state = client_state(store, client_id)
    target = warehouse.open()
    try:
        with explained_errors(), target.writer() as conn:
            # Only the tables whose inputs changed, all when the client's day turned; a
            # run with nothing due (materialized by hand) builds them all.
            tables = tables_due(conn, client_id, state=state) or REPORTING_TABLES
            result = build_reporting_tables(conn, client_id, state=state, tables=tables,
                                            record_inputs=True)
    except Exception as error:
        with contextlib.suppress(Exception):  # the failure itself may not be recordable
            target.record_failure(client_id, f"Building the reporting tables failed: {error}")
        raise
    with stripe.store() as store, contextlib.suppress(ClientNotConnected):
        store.record_sync(client_id, result.built_at)  # env-only clients have no row
    for table in tables:  # the others are as they were: not materialized again
        yield MaterializeResult(
            asset_key=reporting_asset_key(table),
            metadata={"dagster/row_count": result.rows[table.name], "client": client_id},
        )


reporting_assets: list = [reporting_tables]
