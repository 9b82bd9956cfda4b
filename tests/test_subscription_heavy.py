"""A subscription-heavy account syncs and builds its reporting tables every time (issue 9).

The writer's DuckDB runs under a 64 MB memory target. Thousands of subscriptions once made
the load of their items, and then the MRR build, need more than that and fail with
OutOfMemoryException; a target must spill or stream instead. MRR and the active
subscriptions must then equal what the sandbox's own subscriptions say.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import engine.file_warehouse
from engine.reporting.build import build_reporting_tables
from engine.streams import STREAMS_BY_NAME
from sandbox import AccountSpec
from tests.sync_helpers import new_warehouse, run_sync, source_objects

# Subscription-heavy: more subscriptions than one load chunk (5,000), monthly and yearly
# plans (an invoice every period, kept few so the test stays fast).
HEAVY = AccountSpec("heavy", charges=3_000, customers=3_000, subscriptions=7_500,
                    price_intervals=("month", "year"))
PER_MONTH = {"year": 1 / 12, "month": 1.0, "week": 52 / 12, "day": 365 / 12}


def _monthly(amount: float, interval: str, count: int) -> float:
    return amount * PER_MONTH[interval] / max(count, 1)


def _expected_mrr(sub: dict) -> Decimal:
    """docs/metrics.md on one sandbox subscription: items normalised to a month, forever
    coupons off (percent, then amount), never below zero; in major units (usd)."""
    items = sub["items"]["data"]
    recurring = items[0]["price"]["recurring"]
    interval, count = recurring["interval"], recurring["interval_count"]
    gross = sum(_monthly(i["price"]["unit_amount"] * i["quantity"], interval, count)
                for i in items)
    keep, amount_off = 1.0, 0
    for discount in sub["discounts"]:
        coupon = discount["coupon"]
        if coupon["duration"] == "forever":
            keep *= 1 - (coupon["percent_off"] or 0) / 100
            amount_off += coupon["amount_off"] or 0
    net = max(gross * keep - _monthly(amount_off, interval, count), 0)
    return Decimal(repr(net / 100)).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def _build(warehouse) -> dict[str, int]:
    with warehouse.writer() as conn:
        return build_reporting_tables(conn, "heavy").rows


def _reported(warehouse) -> tuple[dict[str, Decimal], int]:
    today = datetime.now(UTC).date()
    with warehouse.reader() as conn:
        per_sub = dict(conn.execute(
            "SELECT subscription_id, mrr FROM reporting.subscription_mrr "
            "WHERE client_id = 'heavy' AND in_mrr").fetchall())
        active = conn.execute(
            "SELECT active_subscriptions FROM reporting.mrr_daily "
            "WHERE client_id = 'heavy' AND day = ?", [today]).fetchone()[0]
    return per_sub, active


def test_subscription_heavy_account_syncs_and_builds_twice(sandbox_factory, tmp_path,
                                                           monkeypatch):
    # DuckDB runs a thread per core, each with buffers of its own: as on an 8-core machine.
    monkeypatch.setitem(engine.file_warehouse.FILE_WRITER_CONFIG, "threads", 8)
    server = sandbox_factory([HEAVY], seed=3)
    warehouse = new_warehouse(tmp_path)
    subs = source_objects(server, "heavy", STREAMS_BY_NAME["subscriptions"])
    counted = {i: s for i, s in subs.items() if s["status"] in ("active", "past_due")}
    assert len(subs) == 7_500 and len(counted) > 3_000

    for _ in range(2):  # the first sync lists everything; the second applies events
        report = run_sync(server, "heavy", warehouse)
        assert not report.errors, report.errors
        rows = _build(warehouse)
        assert rows["subscription_mrr"] == len(subs)
        per_sub, active = _reported(warehouse)
        assert set(per_sub) == set(counted)
        assert active == len(counted)
        wrong = {i: (per_sub[i], _expected_mrr(s)) for i, s in counted.items()
                 if abs(per_sub[i] - _expected_mrr(s)) > Decimal("0.0001")}
        assert not wrong, list(wrong.items())[:5]
