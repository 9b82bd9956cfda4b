"""Helpers for the reporting, widget and web tests: Stripe-shaped objects landed in a real
DuckDB warehouse the way a sync lands them (same normalisation, same merge).

No tests here; the test_reporting*, test_widgets* and test_web* modules import it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from engine.connection_store import ConnectionStore
from engine.reporting import build_reporting_tables
from engine.streams import BALANCE_COLUMNS, STREAMS_BY_NAME, Column
from engine.warehouse import Warehouse, insert_rows
from engine.warehouse_factory import open_warehouse

_ids = itertools.count(1)


@contextmanager
def connected_store(client_id: str, synced_at: datetime) -> Iterator[ConnectionStore]:
    """The settings' connection store with the client connected (a test key) and synced at
    `synced_at`: its widgets judge freshness from that."""
    with ConnectionStore.from_settings() as opened:
        opened.save_connection(client_id, secret_key="sk_test_" + "a" * 24,
                               account_id="acct_1", livemode=False)
        opened.record_sync(client_id, synced_at)
        yield opened


def ts(value: str | date | datetime) -> int:
    """Epoch seconds of an ISO date/time (UTC), as Stripe sends timestamps."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, 12, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _typed(column: Column, obj: dict) -> Any:
    """A Stripe field as the column stores it, read the way the stream spec says."""
    value = _dig(obj, column.source_path)
    if column.ref and isinstance(value, dict):
        value = value.get("id")
    if value is None:
        return None
    if column.type == "TIMESTAMPTZ":
        return datetime.fromtimestamp(value, UTC)
    if column.type == "JSON":
        return orjson.dumps(value).decode()
    return value


def _insert(conn: Any, table: str, columns: tuple[Column, ...], client_id: str,
            objects: list[dict], synced_at: datetime, extra: dict[str, list]) -> None:
    data: dict[str, list] = {"client_id": [client_id] * len(objects), **extra}
    for column in columns:
        data[column.name] = [_typed(column, o) for o in objects]
    data["is_deleted"] = [bool(o.get("deleted")) for o in objects]
    data["raw"] = [orjson.dumps(o).decode() for o in objects]
    data["_synced_at"] = [synced_at] * len(objects)
    incoming = pa.Table.from_pylist([dict(zip(data, row, strict=True))
                                     for row in zip(*data.values(), strict=True)])
    if incoming.num_rows:
        insert_rows(conn, table, incoming)


def land(
    warehouse: Warehouse,
    client_id: str,
    stream: str,
    objects: list[dict],
    synced_at: datetime | None = None,
) -> None:
    """Write objects into stripe.<stream> (child lists replaced whole), as a sync lands them."""
    spec = STREAMS_BY_NAME[stream]
    synced_at = synced_at or datetime.now(UTC)
    with warehouse.writer() as conn:
        _insert(conn, spec.table, spec.columns, client_id, objects, synced_at, {})
        for child in spec.children:
            parents = [o["id"] for o in objects]
            conn.execute(
                f"DELETE FROM stripe.{child.table} WHERE client_id = ? AND "
                f"{child.parent_column} IN (SELECT unnest(?::VARCHAR[]))", [client_id, parents])
            items = [(o["id"], item) for o in objects for item in _dig(o, child.path) or []]
            _insert(conn, child.table, child.columns, client_id, [i for _, i in items],
                    synced_at, {child.parent_column: [p for p, _ in items]})


def land_balance(
    warehouse: Warehouse, client_id: str, captured_at: datetime, currency: str,
    available: int, pending: int,
) -> None:
    names = [c.name for c in BALANCE_COLUMNS]
    incoming = pa.table({
        "client_id": [client_id],
        "id": [f"{currency}:{int(captured_at.timestamp())}"],
        "captured_at": pa.array([captured_at], pa.timestamp("s", tz="UTC")),
        "currency": [currency],
        "available": pa.array([available], pa.int64()),
        "pending": pa.array([pending], pa.int64()),
        "raw": ["{}"],
    }).select(names)
    with warehouse.writer() as conn:
        insert_rows(conn, "balance", incoming)


def build(warehouse: Warehouse, client_id: str, now: datetime | str) -> Any:
    if isinstance(now, str):
        now = datetime.fromisoformat(now).replace(tzinfo=UTC)
    with warehouse.writer() as conn:
        return build_reporting_tables(conn, client_id, now=now)


# -- Stripe-shaped objects (only the fields the reporting reads, plus ids) ----------------


def customer(created: str | date, *, id: str | None = None, email: str | None = None,
             name: str | None = None, deleted: bool = False) -> dict:
    obj = {"id": id or _id("cus"), "object": "customer", "created": ts(created),
           "email": email, "name": name}
    if deleted:
        obj["deleted"] = True
    return obj


def charge(created: str | date | datetime, amount: int, *, currency: str = "usd",
           status: str = "succeeded", customer: str | None = None, id: str | None = None,
           description: str | None = None, amount_refunded: int = 0) -> dict:
    ok = status == "succeeded"
    return {
        "id": id or _id("ch"), "object": "charge", "created": ts(created), "amount": amount,
        "amount_captured": amount if ok else 0, "amount_refunded": amount_refunded,
        "currency": currency, "status": status, "paid": ok, "captured": ok,
        "refunded": amount_refunded >= amount and ok, "disputed": False,
        "customer": customer, "description": description,
        "failure_code": None if ok else "card_declined",
    }


def refund(created: str | date, amount: int, charge_id: str, *, currency: str = "usd",
           status: str = "succeeded") -> dict:
    return {"id": _id("re"), "object": "refund", "created": ts(created), "amount": amount,
            "charge": charge_id, "currency": currency, "status": status}


def balance_transaction(created: str | date, amount: int, fee: int, *, currency: str = "usd",
                        type: str = "charge", reporting_category: str = "charge") -> dict:
    return {"id": _id("txn"), "object": "balance_transaction", "created": ts(created),
            "available_on": ts(created), "amount": amount, "fee": fee, "net": amount - fee,
            "currency": currency, "type": type, "reporting_category": reporting_category,
            "status": "available"}


def payout(created: str | date, amount: int, *, arrival: str | date | None = None,
           currency: str = "usd", status: str = "paid") -> dict:
    return {"id": _id("po"), "object": "payout", "created": ts(created),
            "arrival_date": ts(arrival or created), "amount": amount, "currency": currency,
            "status": status, "method": "standard", "type": "bank_account"}


def price(unit_amount: int | None, interval: str = "month", interval_count: int = 1, *,
          currency: str = "usd", usage_type: str = "licensed") -> dict:
    return {
        "id": _id("price"), "object": "price", "currency": currency, "unit_amount": unit_amount,
        "product": "prod_test", "type": "recurring",
        "recurring": {"interval": interval, "interval_count": interval_count,
                      "usage_type": usage_type},
    }


def coupon(*, percent_off: float | None = None, amount_off: int | None = None,
           currency: str | None = None, duration: str = "forever") -> dict:
    return {"id": _id("coupon"), "object": "coupon", "percent_off": percent_off,
            "amount_off": amount_off, "currency": currency, "duration": duration}


def subscription(
    customer_id: str,
    items: list[tuple[dict, int]],
    *,
    start: str | date,
    status: str = "active",
    currency: str = "usd",
    trial_end: str | date | None = None,
    ended_at: str | date | None = None,
    canceled_at: str | date | None = None,
    cancel_at_period_end: bool = False,
    cancel_at: str | date | None = None,
    discounts: list[Any] | None = None,
    discount: dict | None = None,
    id: str | None = None,
    item_discounts: list[Any] | None = None,
) -> dict:
    sub_id = id or _id("sub")
    started = ts(start)
    return {
        "id": sub_id, "object": "subscription", "created": started, "customer": customer_id,
        "status": status, "currency": currency, "start_date": started,
        "trial_start": started if trial_end else None,
        "trial_end": ts(trial_end) if trial_end else None,
        "ended_at": ts(ended_at) if ended_at else None,
        "canceled_at": ts(canceled_at) if canceled_at else None,
        "cancel_at": ts(cancel_at) if cancel_at else None,
        "cancel_at_period_end": cancel_at_period_end,
        "discounts": discounts if discounts is not None else [],
        "discount": discount,
        "items": {"object": "list", "data": [
            {"id": f"si_{sub_id}_{n}", "object": "subscription_item", "created": started,
             "price": p, "quantity": quantity, "subscription": sub_id,
             "discounts": item_discounts or []}
            for n, (p, quantity) in enumerate(items)
        ]},
    }


def days(start: str, count: int) -> list[date]:
    first = date.fromisoformat(start)
    return [first + timedelta(days=n) for n in range(count)]


def temp_warehouse(tmp_path: Path) -> Warehouse:
    return open_warehouse(tmp_path / "warehouse.duckdb", lock_timeout=30)


def seed_report_data(warehouse: Warehouse, client_id: str, now: datetime, *,
                     seed: int = 1, scale: int = 1, currency: str = "usd") -> None:
    """About 120 days of a small SaaS business: customers, subscriptions on monthly and
    yearly plans, one-off charges, some failures and refunds, fees, payouts, a balance."""
    import random

    rng = random.Random(seed)
    first = (now - timedelta(days=120)).date()
    plans = [price(2_900), price(7_900), price(29_000, "year"), price(19_900)]
    names = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Linus T.",
             "Margaret Hamilton", "Dennis Ritchie", "Barbara Liskov", "Ken Thompson",
             "Frances Allen", "Edsger Dijkstra", "Radia Perlman"]
    customers, charges, refunds, fees, subs, payouts = [], [], [], [], [], []
    for n in range(40 * scale):
        created = first + timedelta(days=rng.randrange(0, 118))
        who = customer(created, name=rng.choice(names), email=f"buyer{n}@example.com")
        customers.append(who)
        plan = rng.choice(plans)
        ended = None
        if rng.random() < 0.15:
            ended = created + timedelta(days=rng.randrange(10, 60))
            if ended >= now.date():
                ended = None
        subs.append(subscription(
            who["id"], [(plan, rng.choice([1, 1, 1, 2, 3]))], start=created,
            status="canceled" if ended else "active", ended_at=ended, currency=currency,
        ))
    for day in range(121):
        when = first + timedelta(days=day)
        for _ in range(rng.randrange(2, 6) * scale):
            who = rng.choice(customers)
            amount = rng.choice([2_900, 7_900, 19_900, 4_500, 12_000, 29_000])
            at = datetime(when.year, when.month, when.day, rng.randrange(8, 20),
                          rng.randrange(60), tzinfo=UTC)
            failed = rng.random() < 0.06
            paid = charge(at, amount, customer=who["id"], currency=currency,
                          status="failed" if failed else "succeeded",
                          description=rng.choice(["Subscription update", "Pro plan",
                                                  "Team plan", "Consulting hours", None]))
            charges.append(paid)
            if not failed:
                fees.append(balance_transaction(when, amount, 30 + amount * 29 // 1000,
                                                currency=currency))
                if rng.random() < 0.04:
                    refunds.append(refund(when + timedelta(days=1), amount, paid["id"],
                                          currency=currency))
        if when.weekday() == 1:
            payouts.append(payout(when, rng.randrange(80_000, 250_000),
                                  arrival=when + timedelta(days=2), currency=currency))
    land(warehouse, client_id, "customers", customers)
    land(warehouse, client_id, "charges", charges)
    land(warehouse, client_id, "refunds", refunds)
    land(warehouse, client_id, "balance_transactions", fees)
    land(warehouse, client_id, "subscriptions", subs)
    land(warehouse, client_id, "payouts", payouts)
    land_balance(warehouse, client_id, now - timedelta(hours=1), currency, 1_234_567, 345_600)
    build(warehouse, client_id, now)
