"""Reconciliation as a Dagster asset check on each client's balance (one result per
client partition), run after the reporting tables are built so that a failure turns the
client's widgets `stale` (engine/reconcile.py holds the checks)."""

import warnings
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    DagsterInstance,
    MetadataValue,
    PreviewWarning,
    asset_check,
)

from assets.client_health import BALANCE_KEY, FRESHNESS_KEY, report_check
from assets.partitions import clients_partitions
from engine.connection_store import ConnectionStore
from engine.permissions import unreadable
from engine.reconcile import Mismatch, money, reconcile_client
from engine.warehouse import Warehouse
from resources.dagster_resources import StripeResource, WarehouseResource

RECONCILE_CHECK = "reconciles_with_stripe"
RECONCILE_CHECK_KEY = AssetCheckKey(BALANCE_KEY, RECONCILE_CHECK)

# Partitioned checks are a preview in Dagster 1.13: the warning would reach every CLI user.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PreviewWarning)

    @asset_check(
        asset=BALANCE_KEY, name=RECONCILE_CHECK, partitions_def=clients_partitions,
        # After the reporting build: a failure must be newer than the figures to stale them.
        additional_deps=[FRESHNESS_KEY],
        description="The client's balance equals the sum of its balance transactions per "
        "currency (available and pending, by each transaction's available_on), every "
        "succeeded charge has its balance transaction, and every payout matches its own. "
        "A failure names the currency and the difference and turns the widgets `stale`.",
    )
    def reconciles_with_stripe(context: AssetCheckExecutionContext,
                               warehouse: WarehouseResource,
                               stripe: StripeResource) -> AssetCheckResult:
        client_id = context.partition_key
        with stripe.store() as store:
            cannot_read = cannot_read_for(store, client_id)
        return AssetCheckResult(**reconcile_verdict(
            client_id, reconcile_client(warehouse.open(), client_id, cannot_read)))


def cannot_read_for(store: ConnectionStore, client_id: str) -> list[str]:
    """What the client's key was connected without (nothing for an env-only client)."""
    connection = store.get(client_id)
    return unreadable(connection.missing_permissions) if connection else []


def reconcile_verdict(client_id: str, mismatches: list[Mismatch] | None) -> dict[str, Any]:
    """The check's verdict on a client: the currency and the difference of each mismatch."""
    if mismatches is None:
        return {"passed": True, "description": "Nothing to check: no balance snapshot yet, "
                "or the key may not read the balance transactions."}
    metadata = {f"{m.check}_{m.currency}": MetadataValue.text(money(m.difference, m.currency))
                for m in mismatches}
    if not mismatches:
        return {"passed": True, "metadata": metadata}
    return {"passed": False, "severity": AssetCheckSeverity.ERROR, "metadata": metadata,
            "description": f"{client_id}: " + " ".join(m.sentence() for m in mismatches)}


def reconcile_now(instance: DagsterInstance, warehouse: Warehouse, store: ConnectionStore,
                  client_ids: list[str]) -> dict[str, list[Mismatch] | None]:
    """Run the check for each client outside a run (the CLI), its verdict recorded on the
    client's partition as a run would record it; what each client's check found."""
    found = {}
    for client_id in client_ids:
        found[client_id] = reconcile_client(warehouse, client_id,
                                            cannot_read_for(store, client_id))
        report_check(instance, RECONCILE_CHECK_KEY, client_id, BALANCE_KEY,
                     **reconcile_verdict(client_id, found[client_id]))
    return found
