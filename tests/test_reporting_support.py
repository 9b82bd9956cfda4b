"""Helpers for the reporting, widget and web tests: Stripe-shaped objects landed in a real
DuckDB warehouse the way a sync lands them (same normalisation, same merge).

No tests here; the test_reporting*, test_widgets* and test_web* modules import it.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from assets.normalize import children_to_arrow, to_arrow
from assets.reporting import build_reporting_tables
from assets.streams import BALANCE_COLUMNS, STREAMS_BY_NAME
from resources.warehouse import Warehouse, merge_rows, replace_children

_ids = itertools.count(1)


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


def land(
    warehouse: Warehouse,
    client_id: str,
    stream: str,
    objects: list[dict],
    synced_at: datetime | None = None,
) -> None:
    """Merge objects into stripe.<stream> (and child tables) as the sync does."""
    spec = STREAMS_BY_NAME[stream]
    synced_at = synced_at or datetime.now(UTC)
    rows = to_arrow(spec.columns, client_id, objects, synced_at)
    with warehouse.writer() as conn:
        merge_rows(conn, spec.table, rows)
        for child in spec.children:
            replace_children(
                conn, child, client_id, [o["id"] for o in objects],
                children_to_arrow(child, client_id, objects, synced_at),
            )


def land_balance(
    warehouse: Warehouse, client_id: str, captured_at: datetime, currency: str,
    available: int, pending: int,
) -> None:
    names = [c.name for c in BALANCE_COLUMNS]
    rows = pa.table({
        "client_id": [client_id],
        "id": [f"{currency}:{int(captured_at.timestamp())}"],
        "captured_at": pa.array([captured_at], pa.timestamp("s", tz="UTC")),
        "currency": [currency],
        "available": pa.array([available], pa.int64()),
        "pending": pa.array([pending], pa.int64()),
        "raw": ["{}"],
    }).select(names)
    with warehouse.writer() as conn:
        merge_rows(conn, "balance", rows)


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
    return Warehouse(tmp_path / "warehouse.duckdb", lock_timeout=30)
