"""Helpers for pipeline tests: run a sync, and read what Stripe (the sandbox) really holds."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson
import stripe

from engine.streams import STREAMS, StreamSpec
from engine.stripe_api import StripeAccount
from engine.sync import SyncReport, sync_client
from engine.warehouse import Warehouse
from engine.warehouse_factory import open_warehouse


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
            objects[obj["id"]] = _whole(client, spec, orjson.loads(orjson.dumps(obj)))
        if not page["has_more"]:
            return objects
        params["starting_after"] = page["data"][-1]["id"]


def _whole(client: stripe.StripeClient, spec: StreamSpec, obj: dict) -> dict:
    """The object with each list it embeds only in part (subscription items, invoice lines)
    paged to its end, as the warehouse keeps it."""
    for child in spec.children:
        holder = _at(obj, child.path[:-1])
        if not child.more_endpoint or not isinstance(holder, dict) or not holder["has_more"]:
            continue
        params = {name: value.format(id=obj["id"]) for name, value in child.more_params.items()}
        items = holder[child.path[-1]]
        while holder["has_more"]:
            page = client.raw_request("get", child.more_endpoint.format(id=obj["id"]),
                                      limit=100, starting_after=items[-1]["id"], **params).data
            items += [orjson.loads(orjson.dumps(item)) for item in page["data"]]
            holder["has_more"] = page["has_more"]
    return obj


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
    return open_warehouse(tmp_path / "warehouse.duckdb")


def _at(obj: dict, path: tuple[str, ...]):
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _typed_totals(warehouse: Warehouse, spec: StreamSpec, client_id: str,
                  live: set[str]) -> tuple[dict[str, int], dict[str, str | None]]:
    """Sums of the stream's integer columns over live rows, and each live row's status."""
    sums = [c.name for c in spec.columns if c.type == "BIGINT" and not c.ref]
    has_status = any(c.name == "status" for c in spec.columns)
    select = ", ".join(["id", "status" if has_status else "NULL", *sums])
    with warehouse.reader() as conn:
        rows = conn.execute(f"SELECT {select} FROM stripe.{spec.table} "
                            "WHERE client_id = ? AND NOT is_deleted", [client_id]).fetchall()
    totals = {name: sum(row[2 + i] or 0 for row in rows) for i, name in enumerate(sums)}
    statuses = {row[0]: row[1] for row in rows if row[0] in live}
    return totals, statuses


def compare_with_source(server, name: str, warehouse: Warehouse, client_id: str | None = None,
                        deleted: Iterable[str] = (),
                        streams: Iterable[StreamSpec] = STREAMS) -> list[str]:
    """Every difference between the warehouse and what the sandbox lists, stream by stream:
    ids and counts, duplicates, each object's JSON, the sums of the typed integer columns
    (amounts), statuses, and deletions (`is_deleted` exactly on the rows Stripe no longer
    lists, `deleted` among them). An empty list means the warehouse equals the source."""
    client_id = client_id or name
    wanted_gone = set(deleted)
    problems: list[str] = []
    for spec in streams:
        source = source_objects(server, name, spec)
        rows = warehouse_rows(warehouse, spec.table, client_id)
        live = {i for i, r in rows.items() if not r["is_deleted"]}
        flagged = set(rows) - live
        table = spec.table
        if live != set(source):
            problems.append(f"{table}: {len(live)} live rows for {len(source)} in the source; "
                            f"missing {sorted(set(source) - live)[:5]}, "
                            f"extra {sorted(live - set(source))[:5]}")
        if flagged & set(source):
            problems.append(f"{table}: flagged deleted, yet listed "
                            f"{sorted(flagged & set(source))[:5]}")
        if (wanted_gone & set(rows)) - flagged:
            problems.append(f"{table}: deleted in Stripe, not flagged "
                            f"{sorted((wanted_gone & set(rows)) - flagged)[:5]}")
        expected_raw = {i: as_kept(spec, obj) for i, obj in source.items()}
        changed = [i for i in live & set(source) if rows[i]["raw"] != expected_raw[i]]
        if changed:
            problems.append(f"{table}: {len(changed)} rows differ from Stripe, e.g. {changed[0]}")
        if duplicate_count(warehouse, table):
            problems.append(f"{table}: duplicate rows")
        totals, statuses = _typed_totals(warehouse, spec, client_id, live)
        for column, total in totals.items():
            path = next(c.source_path for c in spec.columns if c.name == column)
            expected = sum(_at(obj, path) or 0 for obj in source.values())
            if total != expected:
                problems.append(f"{table}.{column}: sum {total} != source {expected}")
        if statuses and statuses != {i: source[i].get("status") for i in statuses}:
            problems.append(f"{table}: statuses differ from the source")
        problems += _child_differences(warehouse, spec, client_id, source)
    return problems


def as_kept(spec: StreamSpec, obj: dict) -> dict:
    """The object as its row's `raw` keeps it: lists kept apart (ChildSpec.in_parent_raw
    false) without their items, `has_more` true when there were any."""
    for child in spec.children:
        holder = _at(obj, child.path[:-1])
        if child.in_parent_raw or not isinstance(holder, dict) or not holder.get(child.path[-1]):
            continue
        obj = orjson.loads(orjson.dumps(obj))
        holder = _at(obj, child.path[:-1])
        holder[child.path[-1]] = []
        holder["has_more"] = True
    return obj


def _child_differences(warehouse: Warehouse, spec: StreamSpec, client_id: str,
                       source: dict[str, dict]) -> list[str]:
    """Child tables (subscription items, invoice lines) hold exactly the items of the listed
    parents, each under its parent, its JSON as Stripe lists it."""
    problems = []
    for child in spec.children:
        expected = {(obj["id"], item["id"]): item for obj in source.values()
                    for item in _at(obj, child.path) or []}
        with warehouse.reader() as conn:
            rows = conn.execute(
                f"SELECT c.{child.parent_column}, c.id, c.raw FROM stripe.{child.table} c "
                f"JOIN stripe.{spec.table} p "
                f"ON p.client_id = c.client_id AND p.id = c.{child.parent_column} "
                "WHERE c.client_id = ? AND NOT p.is_deleted", [client_id]).fetchall()
        keys = [(parent, item) for parent, item, _ in rows]
        if sorted(keys) != sorted(expected):
            problems.append(f"{child.table}: {len(rows)} rows for {len(expected)} in the source")
            continue
        differ = [key for parent, item, raw in rows
                  if orjson.loads(raw) != expected[key := (parent, item)]]
        if differ:
            problems.append(f"{child.table}: {len(differ)} rows differ from Stripe, "
                            f"e.g. {differ[0]}")
    return problems
