"""`stripe-reports reconcile`: the reconciliation checks now, one line per failed check."""

from __future__ import annotations

import click

from assets.reconcile_check import reconcile_now
from engine.clients import client_roster
from engine.connection_store import ConnectionStore
from engine.warehouse_factory import warehouse_from_settings
from pipelines.instance import get_instance, register_clients


def reconcile(names: list[str]) -> int:
    """Check each named client (default: every known one); 1 if any check failed."""
    warehouse = warehouse_from_settings()
    warehouse.ensure_schema()  # an unusable warehouse: one line, and nothing checked
    with ConnectionStore.from_settings() as store:
        names = names or sorted(client_roster(store).clients)
        instance = get_instance()
        register_clients(instance, names)
        found = reconcile_now(instance, warehouse, store, names)
    failed = 0
    for client, mismatches in found.items():
        if mismatches is None:
            click.echo(f"{client}: nothing to check (no balance synced yet, or the key may "
                       "not read the balance transactions).")
        elif not mismatches:
            click.echo(f"{client}: reconciles with Stripe.")
        for mismatch in mismatches or []:
            click.echo(f"{client}: {mismatch.check}, {mismatch.currency.upper()}: "
                       f"{mismatch.sentence()}")
        failed += bool(mismatches)
    if failed:
        click.echo(f"\n{failed} client(s) do not reconcile with Stripe; their widgets say "
                   "`stale` until the check passes.", err=True)
    return 1 if failed else 0
