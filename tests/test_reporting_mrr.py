"""MRR on hand-computed cases (docs/metrics.md), built in a real DuckDB file."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tests.test_reporting_support import (
    build,
    coupon,
    customer,
    land,
    price,
    subscription,
    temp_warehouse,
)

CLIENT = "acme"
NOW = "2024-06-30T18:00:00"


@pytest.fixture()
def warehouse(tmp_path):
    return temp_warehouse(tmp_path)


def land_subscriptions(warehouse, *subs: dict, client: str = CLIENT) -> None:
    customers = {s["customer"] for s in subs}
    land(warehouse, client, "customers",
         [customer("2024-01-01", id=c) for c in sorted(customers)])
    land(warehouse, client, "subscriptions", list(subs))


def sub_mrr(warehouse, client: str = CLIENT) -> dict[str, tuple[Decimal, bool]]:
    with warehouse.reader() as conn:
        rows = conn.execute(
            "SELECT subscription_id, mrr, in_mrr FROM reporting.subscription_mrr "
            "WHERE client_id = ?", [client]).fetchall()
    return {sid: (mrr, in_mrr) for sid, mrr, in_mrr in rows}


def mrr_on(warehouse, day: str, currency: str = "usd", client: str = CLIENT) -> dict:
    with warehouse.reader() as conn:
        cursor = conn.execute(
            "SELECT * FROM reporting.mrr_daily WHERE client_id = ? AND currency = ? AND day = ?",
            [client, currency, date.fromisoformat(day)])
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
    return dict(zip(names, row, strict=True)) if row else {}


def test_yearly_1200_is_100_a_month(warehouse):
    land_subscriptions(warehouse, subscription(
        "cus_a", [(price(120_000, "year"), 1)], start="2024-01-10", id="sub_yearly"))
    build(warehouse, CLIENT, NOW)
    assert sub_mrr(warehouse)["sub_yearly"] == (Decimal("100"), True)
    assert mrr_on(warehouse, "2024-06-30")["mrr"] == Decimal("100")
    assert mrr_on(warehouse, "2024-01-10")["new_mrr"] == Decimal("100")


def test_quarterly_weekly_daily_and_quantity(warehouse):
    land_subscriptions(
        warehouse,
        subscription("cus_q", [(price(30_000, "month", 3), 1)], start="2024-02-01", id="sub_q"),
        subscription("cus_w", [(price(1_000, "week"), 1)], start="2024-02-01", id="sub_w"),
        subscription("cus_2w", [(price(2_000, "week", 2), 1)], start="2024-02-01", id="sub_2w"),
        subscription("cus_d", [(price(100, "day"), 1)], start="2024-02-01", id="sub_d"),
        subscription("cus_3", [(price(2_500, "month"), 3)], start="2024-02-01", id="sub_3"),
    )
    build(warehouse, CLIENT, NOW)
    mrr = {k: v[0] for k, v in sub_mrr(warehouse).items()}
    assert mrr["sub_q"] == Decimal("100")  # 300 a quarter
    assert mrr["sub_w"] == Decimal("43.3333")  # 10 a week x 52 / 12
    assert mrr["sub_2w"] == Decimal("43.3333")  # 20 every two weeks
    assert mrr["sub_d"] == Decimal("30.4167")  # 1 a day x 365 / 12
    assert mrr["sub_3"] == Decimal("75")  # 25 x quantity 3
    assert mrr_on(warehouse, "2024-06-30")["mrr"] == Decimal("100") + Decimal("43.3333") * 2 \
        + Decimal("30.4167") + Decimal("75")


def test_forever_discounts_in_every_shape_and_no_others(warehouse):
    twenty = coupon(percent_off=20)
    monthly = price(5_000)
    land_subscriptions(
        warehouse,
        # newer API: expanded discount with source.coupon
        subscription("cus_1", [(monthly, 1)], start="2024-03-01", id="sub_source",
                     discounts=[{"id": "di_1", "source": {"type": "coupon", "coupon": twenty}}]),
        # older API: expanded discount with coupon
        subscription("cus_2", [(monthly, 1)], start="2024-03-01", id="sub_coupon",
                     discounts=[{"id": "di_2", "coupon": twenty}]),
        # legacy `discount`, and `discounts` holding only its id: applied once, not twice
        subscription("cus_3", [(monthly, 1)], start="2024-03-01", id="sub_legacy",
                     discounts=["di_3"], discount={"id": "di_3", "coupon": twenty}),
        # amount off, forever: 5.00 off every monthly invoice
        subscription("cus_4", [(monthly, 1)], start="2024-03-01", id="sub_amount",
                     discounts=[{"id": "di_4", "coupon": coupon(amount_off=500, currency="usd")}]),
        # a coupon that ends does not change recurring revenue
        subscription("cus_5", [(monthly, 1)], start="2024-03-01", id="sub_once",
                     discounts=[{"id": "di_5", "coupon": coupon(percent_off=50, duration="once")}]),
        # amount off a yearly plan: 120 off a year is 10 off a month
        subscription("cus_6", [(price(120_000, "year"), 1)], start="2024-03-01", id="sub_yr_off",
                     discounts=[{"id": "di_6", "coupon": coupon(amount_off=12_000,
                                                                currency="usd")}]),
        # an item-level forever discount
        subscription("cus_7", [(monthly, 2)], start="2024-03-01", id="sub_item",
                     item_discounts=[{"id": "di_7", "coupon": coupon(percent_off=10)}]),
        # a discount bigger than the price never makes MRR negative
        subscription("cus_8", [(monthly, 1)], start="2024-03-01", id="sub_free",
                     discounts=[{"id": "di_8", "coupon": coupon(amount_off=9_000,
                                                                currency="usd")}]),
    )
    build(warehouse, CLIENT, NOW)
    mrr = {k: v[0] for k, v in sub_mrr(warehouse).items()}
    assert mrr["sub_source"] == Decimal("40")
    assert mrr["sub_coupon"] == Decimal("40")
    assert mrr["sub_legacy"] == Decimal("40")
    assert mrr["sub_amount"] == Decimal("45")
    assert mrr["sub_once"] == Decimal("50")
    assert mrr["sub_yr_off"] == Decimal("90")
    assert mrr["sub_item"] == Decimal("90")
    assert mrr["sub_free"] == Decimal("0")


def test_jpy_in_yen_and_never_added_to_dollars(warehouse):
    land_subscriptions(
        warehouse,
        subscription("cus_jp", [(price(12_000, "year", currency="jpy"), 1)], start="2024-04-01",
                     currency="jpy", id="sub_jpy"),
        subscription("cus_us", [(price(5_000), 1)], start="2024-04-01", id="sub_usd"),
    )
    build(warehouse, CLIENT, NOW)
    assert sub_mrr(warehouse)["sub_jpy"][0] == Decimal("1000")  # ¥12,000 a year
    assert mrr_on(warehouse, "2024-06-30", "jpy")["mrr"] == Decimal("1000")
    assert mrr_on(warehouse, "2024-06-30", "usd")["mrr"] == Decimal("50")


def test_trials_and_incomplete_excluded_past_due_counted(warehouse):
    monthly = price(5_000)
    land_subscriptions(
        warehouse,
        subscription("cus_t", [(monthly, 1)], start="2024-06-20", status="trialing",
                     trial_end="2024-07-04", id="sub_trialing"),
        subscription("cus_c", [(monthly, 1)], start="2024-05-01", trial_end="2024-05-15",
                     id="sub_converted"),
        subscription("cus_i", [(monthly, 1)], start="2024-06-29", status="incomplete",
                     id="sub_incomplete"),
        subscription("cus_e", [(monthly, 1)], start="2024-06-01", status="incomplete_expired",
                     ended_at="2024-06-02", id="sub_expired"),
        subscription("cus_u", [(monthly, 1)], start="2024-03-01", status="unpaid", id="sub_unpaid"),
        subscription("cus_p", [(monthly, 1)], start="2024-03-01", status="past_due",
                     id="sub_past_due"),
    )
    build(warehouse, CLIENT, NOW)
    counted = {k for k, (_, in_mrr) in sub_mrr(warehouse).items() if in_mrr}
    assert counted == {"sub_converted", "sub_past_due"}
    assert mrr_on(warehouse, "2024-06-30")["mrr"] == Decimal("100")
    # the converted trial counts from the day its trial ended
    assert mrr_on(warehouse, "2024-05-14").get("mrr", Decimal(0)) == Decimal("50")  # past_due
    assert mrr_on(warehouse, "2024-05-15")["mrr"] == Decimal("100")
    assert mrr_on(warehouse, "2024-05-15")["new_mrr"] == Decimal("50")


def test_cancel_at_period_end_counts_until_it_ends(warehouse):
    monthly = price(5_000)
    kept = subscription("cus_k", [(monthly, 1)], start="2024-05-01", cancel_at_period_end=True,
                        cancel_at="2024-07-01", id="sub_keep")
    ended = subscription("cus_x", [(monthly, 1)], start="2024-04-01", status="canceled",
                         cancel_at_period_end=True, canceled_at="2024-05-20",
                         ended_at="2024-06-01T00:00:00", id="sub_ended")
    land_subscriptions(warehouse, kept, ended)
    build(warehouse, CLIENT, NOW)
    assert sub_mrr(warehouse)["sub_keep"] == (Decimal("50"), True)
    assert sub_mrr(warehouse)["sub_ended"][1] is False
    # canceled on 20 May, still counted until the period ended on 1 June
    assert mrr_on(warehouse, "2024-05-31")["mrr"] == Decimal("100")
    june_first = mrr_on(warehouse, "2024-06-01")
    assert june_first["mrr"] == Decimal("50")
    assert june_first["churned_mrr"] == Decimal("-50")
    assert june_first["churned_subscriptions"] == 1
    assert mrr_on(warehouse, "2024-06-30")["mrr"] == Decimal("50")


def test_plan_change_mid_month_is_expansion_from_that_day(warehouse):
    sub = subscription("cus_up", [(price(5_000), 1)], start="2024-02-10", id="sub_change")
    land_subscriptions(warehouse, sub)
    build(warehouse, CLIENT, "2024-03-01T09:00:00")
    # on 15 March the customer moves to the 80 plan; the next sync sees the new item
    sub["items"]["data"][0]["price"] = price(8_000)
    land(warehouse, CLIENT, "subscriptions", [sub])
    build(warehouse, CLIENT, "2024-03-15T09:00:00")
    build(warehouse, CLIENT, "2024-03-31T23:00:00")
    assert mrr_on(warehouse, "2024-03-14")["mrr"] == Decimal("50")
    mid = mrr_on(warehouse, "2024-03-15")
    assert (mid["mrr"], mid["expansion_mrr"], mid["new_mrr"]) == (Decimal("80"), Decimal("30"), 0)
    assert mrr_on(warehouse, "2024-03-31")["mrr"] == Decimal("80")
    # a downgrade back is a contraction, the customer stays
    sub["items"]["data"][0]["price"] = price(6_000)
    land(warehouse, CLIENT, "subscriptions", [sub])
    build(warehouse, CLIENT, "2024-04-10T09:00:00")
    april = mrr_on(warehouse, "2024-04-10")
    assert (april["mrr"], april["contraction_mrr"]) == (Decimal("60"), Decimal("-20"))
    assert april["paying_customers"] == 1


def test_switching_subscriptions_same_day_is_not_churn(warehouse):
    old = subscription("cus_s", [(price(5_000), 1)], start="2024-01-05", status="canceled",
                       ended_at="2024-04-10T10:00:00", id="sub_old")
    new = subscription("cus_s", [(price(9_000), 1)], start="2024-04-10T10:00:00", id="sub_new")
    land_subscriptions(warehouse, old, new)
    build(warehouse, CLIENT, NOW)
    day = mrr_on(warehouse, "2024-04-10")
    assert (day["mrr"], day["expansion_mrr"], day["churned_mrr"], day["new_mrr"]) == (
        Decimal("90"), Decimal("40"), 0, 0)
    assert day["active_subscriptions"] == 1


def test_reactivation_after_churn(warehouse):
    first = subscription("cus_r", [(price(5_000), 1)], start="2024-01-01", status="canceled",
                         ended_at="2024-02-01T00:00:00", id="sub_first")
    back = subscription("cus_r", [(price(5_000), 1)], start="2024-04-01", id="sub_back")
    land_subscriptions(warehouse, first, back)
    build(warehouse, CLIENT, NOW)
    assert mrr_on(warehouse, "2024-02-01")["churned_mrr"] == Decimal("-50")
    assert mrr_on(warehouse, "2024-03-15")["mrr"] == 0
    april = mrr_on(warehouse, "2024-04-01")
    assert (april["reactivation_mrr"], april["new_mrr"]) == (Decimal("50"), 0)


def test_each_client_only_its_own_rows(warehouse):
    land_subscriptions(warehouse, subscription(
        "cus_a", [(price(5_000), 1)], start="2024-01-01", id="sub_a"), client="alpha")
    land_subscriptions(warehouse, subscription(
        "cus_b", [(price(7_000), 1)], start="2024-01-01", id="sub_b"), client="beta")
    build(warehouse, "alpha", NOW)
    build(warehouse, "beta", NOW)
    build(warehouse, "alpha", NOW)  # rebuilding one client leaves the other alone
    assert set(sub_mrr(warehouse, "alpha")) == {"sub_a"}
    assert mrr_on(warehouse, "2024-06-30", client="alpha")["mrr"] == Decimal("50")
    assert mrr_on(warehouse, "2024-06-30", client="beta")["mrr"] == Decimal("70")
