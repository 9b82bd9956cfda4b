"""The Dagster resources: thin, configurable doors onto the Stripe accounts and the warehouse."""

from __future__ import annotations

from dagster import ConfigurableResource

from engine.connection_store import ClientConnection, ConnectionStore
from engine.credentials import open_account
from engine.stripe_api import StripeAccount
from engine.warehouse import Warehouse
from engine.warehouse_factory import open_warehouse, warehouse_from_settings


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse (STRIPE_REPORTS_WAREHOUSE unless `path` is set)."""

    path: str | None = None

    def open(self) -> Warehouse:
        return open_warehouse(self.path) if self.path else warehouse_from_settings()


class StripeResource(ConfigurableResource):
    """Each client's Stripe account, with its key read from the connection store at run time."""

    api_base: str | None = None
    # Parallel requests per stream; the account's rate limiter caps the total.
    concurrency: int = 24

    def store(self) -> ConnectionStore:
        return ConnectionStore.from_settings()

    def account_for(self, client_id: str) -> tuple[StripeAccount, ClientConnection | None]:
        """The client's account and its stored connection (None for env-only clients).

        Raises ClientNotConnected, with guidance, when no key can be found.
        """
        return open_account(client_id, api_base=self.api_base)
