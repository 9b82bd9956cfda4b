"""Helpers for pipeline tests: run a sync, and read what Stripe (the sandbox) really holds."""

from __future__ import annotations

from pathlib import Path

import orjson
import stripe

from assets.stream_sync import SyncReport, sync_client
from assets.streams import STREAMS, StreamSpec
from resources.stripe_api import StripeAccount
from resources.warehouse import Warehouse


def account_for(server, name: str, client_id: str | None = None, **kwargs) -> StripeAccount:
    key = server.world.accounts[name].secret_key
    kwargs.setdefault("requests_per_second", 2000)
    return StripeAccount(client_id or name, key, api_base=server.base_url, **kwargs)


def run_sync(server, name: str, warehouse: Warehouse, **kwargs) -> SyncReport:
    return sync_client(account_for(server, name), warehouse, STREAMS, **kwargs)


def source_objects(server, name: str, spec: StreamSpec) -> dict[str, dict]:
    """Every object the API lists for a stream, read with the SDK's own auto-paging."""
    client = stripe.StripeClient(server.world.accounts[name].secret_key,
                                 base_addresses={"api": server.base_url})
    params = {"limit": 100, **spec.list_params}
    objects: dict[str, dict] = {}
    while True:
        page = client.raw_request("get", spec.endpoint, **params).data
        for obj in page["data"]:
            objects[obj["id"]] = orjson.loads(orjson.dumps(obj))
        if not page["has_more"]:
            return objects
        params["starting_after"] = page["data"][-1]["id"]


def warehouse_rows(warehouse: Warehouse, table: str, client_id: str) -> dict[str, dict]:
    with warehouse.reader() as conn:
        rows = conn.execute(
            f"SELECT id, raw, is_deleted FROM stripe.{table} WHERE client_id = ?", [client_id]
        ).fetchall()
    return {row[0]: {"raw": orjson.loads(row[1]), "is_deleted": row[2]} for row in rows}


def duplicate_count(warehouse: Warehouse, table: str) -> int:
    with warehouse.reader() as conn:
        return conn.execute(
            f"SELECT count(*) - count(DISTINCT (client_id, id)) FROM stripe.{table}"
        ).fetchone()[0]


def new_warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")
