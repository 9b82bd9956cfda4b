"""The Dagster resources: thin, configurable doors onto the Stripe accounts and the warehouse."""

from __future__ import annotations

from dagster import ConfigurableResource

from resources.client_config import client_config
from resources.connection_store import (
    ClientConnection,
    ClientNotConnected,
    ConnectionState,
    ConnectionStore,
)
from resources.settings import load_settings
from resources.stripe_api import StripeAccount
from resources.warehouse import Warehouse


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse (STRIPE_REPORTS_WAREHOUSE unless `path` is set)."""

    path: str | None = None

    def open(self) -> Warehouse:
        return Warehouse(self.path) if self.path else Warehouse.from_settings()


class StripeResource(ConfigurableResource):
    """Each client's Stripe account, with its key read from the connection store at run time."""

    api_base: str | None = None
    max_network_retries: int = 2
    # Parallel requests per stream; the account's rate limiter caps the total.
    concurrency: int = 24

    def store(self) -> ConnectionStore:
        return ConnectionStore.from_settings()

    def account_for(self, client_id: str) -> tuple[StripeAccount, ClientConnection | None]:
        """The client's account and its stored connection (None for env-only clients).

        Raises ClientNotConnected, with guidance, when no key can be found.
        """
        return open_account(
            client_id, api_base=self.api_base, max_network_retries=self.max_network_retries
        )


def open_account(
    client_id: str, *, api_base: str | None = None, max_network_retries: int = 2,
    store: ConnectionStore | None = None,
) -> tuple[StripeAccount, ClientConnection | None]:
    settings = load_settings()
    config = client_config(client_id)
    store = store or ConnectionStore.from_settings(settings)
    connection = store.get(client_id)
    env_key = config.key_from_env()
    if env_key:
        key = env_key.strip()
    elif connection is not None and connection.state != ConnectionState.DISCONNECTED:
        key = store.secret_key(client_id)
    elif config.key_env:
        raise ClientNotConnected(
            client_id, f"declares key_env {config.key_env} in clients.yaml, which is not set")
    else:
        raise ClientNotConnected(client_id)
    account = StripeAccount(
        client_id,
        key,
        api_base=api_base or settings.api_base,
        stripe_account=config.stripe_account or (connection.stripe_account if connection else None),
        requests_per_second=config.max_requests_per_second,
        max_network_retries=max_network_retries,
    )
    return account, connection
