"""Generated accounts hang together the way a report expects real Stripe data to."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from sandbox import AccountSpec, SandboxWorld
from sandbox.templates import fixture

DAY = 86_400


@pytest.fixture(scope="module")
def world() -> SandboxWorld:
    return SandboxWorld.generate(
        21,
        [
            AccountSpec(
                "usd",
                charges=2500,
                customers=150,
                subscriptions=120,
                products=8,
                price_intervals=("week", "month", "quarter", "year"),
            ),
            AccountSpec("yen", charges=400, customers=30, subscriptions=20, currency="jpy"),
        ],
    )


def rows(world: SandboxWorld, name: str, path: str) -> list[dict]:
    table = world.accounts[name].tables[path]
    return [table.get(i) for i in range(len(table))]


@pytest.mark.parametrize(
    "path,kind",
    [
        ("charges", "charge"),
        ("refunds", "refund"),
        ("customers", "customer"),
        ("subscriptions", "subscription"),
        ("invoices", "invoice"),
        ("balance_transactions", "balance_transaction"),
        ("payouts", "payout"),
        ("products", "product"),
        ("prices", "price"),
        ("events", "event"),
    ],
)
def test_objects_carry_every_field_of_stripes_example(world, path, kind):
    expected = set(fixture(kind))
    objects = rows(world, "usd", path)
    assert objects
    for obj in objects[:50] + objects[-50:]:
        assert expected <= set(obj), expected - set(obj)
        assert obj["object"] == kind


def test_timestamps_cover_the_history_and_end_minutes_ago(world):
    now = world.now
    charges = rows(world, "usd", "charges")
    created = [c["created"] for c in charges]
    assert min(created) >= now - 400 * DAY
    assert min(created) < now - 300 * DAY
    assert now - 15 * 60 < max(created) < now
    assert created == sorted(created)


def test_charges_balance_transactions_and_refunds_agree(world):
    txns = {t["id"]: t for t in rows(world, "usd", "balance_transactions")}
    refunds_by_charge = defaultdict(list)
    for refund in rows(world, "usd", "refunds"):
        refunds_by_charge[refund["charge"]].append(refund)
        txn = txns[refund["balance_transaction"]]
        assert (txn["type"], txn["amount"], txn["source"]) == (
            "refund",
            -refund["amount"],
            refund["id"],
        )
    charges = rows(world, "usd", "charges")
    failed = [c for c in charges if c["status"] == "failed"]
    assert 0.04 < len(failed) / len(charges) < 0.13
    for charge in failed:
        assert (
            charge["failure_code"] and not charge["paid"] and charge["balance_transaction"] is None
        )
    customers = {c["id"]: c for c in rows(world, "usd", "customers")}
    for charge in charges:
        if charge["customer"]:
            assert customers[charge["customer"]]["created"] <= charge["created"]
        assert charge["payment_intent"].startswith("pi_")
        refunded = sum(r["amount"] for r in refunds_by_charge[charge["id"]])
        assert charge["amount_refunded"] == refunded
        assert charge["refunded"] == (refunded == charge["amount"])
        if charge["status"] != "succeeded":
            continue
        txn = txns[charge["balance_transaction"]]
        fee = round(charge["amount"] * 0.029) + 30
        assert (txn["type"], txn["reporting_category"], txn["source"]) == (
            "charge",
            "charge",
            charge["id"],
        )
        assert (txn["amount"], txn["fee"], txn["net"]) == (
            charge["amount"],
            fee,
            charge["amount"] - fee,
        )
        assert txn["available_on"] > charge["created"]
    assert any(0 < c["amount_refunded"] < c["amount"] for c in charges)
    assert any(c["refunded"] for c in charges)


def test_payouts_and_balance_follow_the_balance_transactions(world):
    txns = {t["id"]: t for t in rows(world, "usd", "balance_transactions")}
    payouts = rows(world, "usd", "payouts")
    assert len(payouts) > 60  # every few days over 400 days
    for payout in payouts:
        txn = txns[payout["balance_transaction"]]
        assert payout["amount"] > 0
        assert (txn["type"], txn["amount"], txn["source"]) == (
            "payout",
            -payout["amount"],
            payout["id"],
        )
    balance = world.accounts["usd"].balance_object()
    total = balance["available"][0]["amount"] + balance["pending"][0]["amount"]
    assert total == sum(t["net"] for t in txns.values())
    assert balance["pending"][0]["amount"] == sum(
        t["net"] for t in txns.values() if t["available_on"] > time.time()
    )
    assert balance["available"][0]["currency"] == "usd"


def test_subscriptions_invoices_and_prices_hang_together(world):
    now = world.now
    prices = rows(world, "usd", "prices")
    cadences = {
        (p["recurring"]["interval"], p["recurring"]["interval_count"])
        for p in prices
        if p["recurring"]
    }
    assert {("week", 1), ("month", 1), ("month", 3), ("year", 1)} <= cadences
    assert any(p["type"] == "one_time" for p in prices)
    subs = rows(world, "usd", "subscriptions")
    statuses = {s["status"] for s in subs}
    assert {"active", "past_due", "trialing", "canceled"} <= statuses
    for sub in subs:
        items = sub["items"]["data"]
        assert items and all(1 <= item["quantity"] <= 3 for item in items)
        assert all(item["price"]["recurring"] for item in items)
        if sub["status"] == "canceled":
            assert sub["canceled_at"] and sub["ended_at"] and sub["ended_at"] >= sub["start_date"]
        else:
            assert sub["ended_at"] is None
            assert items[0]["current_period_start"] <= now < items[0]["current_period_end"]
        if sub["status"] == "trialing":
            assert sub["trial_end"] > now
        for discount in sub["discounts"]:
            coupon = discount["source"]["coupon"]
            assert coupon == discount["coupon"] and coupon["duration"] == "forever"
            assert coupon["percent_off"] or coupon["amount_off"]
    assert any(s["discounts"] for s in subs)
    assert any(s["cancel_at_period_end"] for s in subs)
    by_id = {s["id"]: s for s in subs}
    invoices = rows(world, "usd", "invoices")
    assert len(invoices) > len(subs)  # one per billing period
    for invoice in invoices:
        sub = by_id[invoice["subscription"]]
        assert invoice["parent"]["subscription_details"]["subscription"] == sub["id"]
        assert invoice["customer"] == sub["customer"]
        assert invoice["period_start"] < invoice["period_end"]
        lines = invoice["lines"]["data"]
        discount = sum(a["amount"] for a in invoice["total_discount_amounts"])
        assert sum(line["amount"] for line in lines) - discount == invoice["total"]
        if invoice["status"] == "paid":
            assert invoice["amount_paid"] == invoice["total"]
    assert {i["status"] for i in invoices} == {"paid", "open"}


def test_zero_decimal_currency_amounts_are_whole_yen(world):
    charges = rows(world, "yen", "charges")
    assert {c["currency"] for c in charges} == {"jpy"}
    assert all(c["amount"] % 10 == 0 and c["amount"] >= 10 for c in charges)
    median = sorted(c["amount"] for c in charges)[len(charges) // 2]
    assert 1_000 < median < 50_000  # yen, not cents
    prices = rows(world, "yen", "prices")
    assert all(p["unit_amount"] % 10 == 0 for p in prices)


def test_delinquent_customers_are_the_past_due_subscribers(world):
    subs = rows(world, "usd", "subscriptions")
    past_due = {s["customer"] for s in subs if s["status"] == "past_due"}
    delinquent = {c["id"] for c in rows(world, "usd", "customers") if c["delinquent"]}
    assert past_due and delinquent == past_due
    named = [c for c in rows(world, "usd", "customers") if c["email"]]
    assert 0.6 < len(named) / 150 < 1.0
