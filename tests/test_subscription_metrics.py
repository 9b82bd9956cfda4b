"""Subscription analytics widgets on hand-computed cases (docs/metrics.md), in a real DuckDB
file: churn rates as Stripe and ChartMogul define them, retention, ARPA, LTV, trials."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import render, run_widgets, widget_catalog
from tests.test_reporting_support import (
    build,
    charge,
    connected_store,
    customer,
    land,
    price,
    subscription,
)

CLIENT = "acme"
END = date(2024, 6, 30)
NOW = datetime(2024, 6, 30, 18, tzinfo=UTC)


@pytest.fixture()
def store(home):
    with connected_store(CLIENT, NOW - timedelta(minutes=10)) as opened:
        yield opened


@pytest.fixture()
def warehouse(home):
    return warehouse_from_settings()


def land_subs(warehouse, subs: list[dict]) -> None:
    land(warehouse, CLIENT, "customers",
         [customer("2023-01-01", id=c) for c in sorted({s["customer"] for s in subs})])
    land(warehouse, CLIENT, "subscriptions", subs)
    build(warehouse, CLIENT, NOW)


def figures(warehouse, store, start: date | str, end: date | str = END, **kwargs) -> dict:
    results = run_widgets(CLIENT, None, str(start), str(end), warehouse=warehouse,
                          store=store, now=NOW, **kwargs)
    return {r.widget: r for r in results}


def monthly(customer_id: str, start: date | str, amount: int = 10_000, **kwargs) -> dict:
    return subscription(customer_id, [(price(amount), 1)], start=str(start), **kwargs)


def ended(customer_id: str, start: date | str, end: date | str, amount: int = 10_000) -> dict:
    return monthly(customer_id, start, amount, status="canceled", ended_at=str(end))


def steady_two_percent() -> list[dict]:
    """100 subscribers; in each of the 12 windows of 30 days ending on END, 2 churn and 2
    new ones start: every window is 2 / (100 + 2) = 1.96 %."""
    subs = []
    for k in range(12):
        day = END - timedelta(days=30 * k + 10)
        subs += [ended(f"cus_base{2 * k + n}", "2023-01-01", day) for n in range(2)]
        subs += [monthly(f"cus_new{k}_{n}", day) for n in range(2)]
    return subs + [monthly(f"cus_base{n}", "2023-01-01") for n in range(24, 100)]


def test_a_year_of_two_percent_a_month_is_about_two_percent_not_24(warehouse, store):
    land_subs(warehouse, steady_two_percent())
    year = figures(warehouse, store, END - timedelta(days=359))
    assert year["churn_rate"].value == 1.96  # 100 x 2 / 102
    assert year["churn_rate"].definition.startswith("Stripe Billing analytics")
    # The period rate is kept under its own name: 24 churned of 100 subscriptions.
    assert year["subscription_churn_rate"].value == 24.0
    ytd = figures(warehouse, store, "2024-01-01")
    assert ytd["churn_rate"].value == 1.96  # year to date
    # Trailing 12 months whatever the period: of the 100 paying on 1 July 2023, 76 still
    # pay 100 each (the new ones left out); no expansion, so NRR = GRR.
    assert (ytd["nrr_12m"].value, ytd["grr_12m"].value) == (76.0, 76.0)
    assert ytd["nrr"].value == 88.0  # since 1 January: 100 then, 12 churned since
    # A week reads the 30 days up to its end, Stripe's rolling window.
    assert figures(warehouse, store, "2024-06-24")["churn_rate"].value == 1.96


def test_subscriber_churn_counts_customers_not_subscriptions(warehouse, store):
    land_subs(warehouse, [
        monthly("cus_a", "2024-01-01"), ended("cus_a", "2024-01-01", "2024-06-10"),  # downgrade
        ended("cus_b", "2024-01-01", "2024-06-15"),  # churns
        ended("cus_c", "2024-06-05", "2024-06-20"),  # starts and churns inside the window
        monthly("cus_d", "2024-01-01"),
    ])
    june = figures(warehouse, store, "2024-06-01")
    # Subscribers on May 31: a, b, d; new in June: c; churned: b and c. 2 / (3 + 1).
    assert june["churn_rate"].value == 50.0
    # May had no churn: a rate's change is in percentage points.
    assert "previous period: 0.0% (+50.0 pp)" in render(june["churn_rate"], "table")
    # Subscriptions: a's second, b's and c's ended, of 4 active on May 31.
    assert june["subscription_churn_rate"].value == 75.0


def test_no_subscribers_gives_no_rate(warehouse, store):
    land_subs(warehouse, [monthly("cus_a", "2024-06-20")])
    assert figures(warehouse, store, "2024-05-01", "2024-05-30")["churn_rate"].value is None


def priced(amount: int, product: str, interval: str = "month") -> dict:
    plan = price(amount, interval)
    plan["product"] = product
    return plan


def june_book() -> list[dict]:
    """USD, May 31: A 150 (two subscriptions), B 200, C 100 (annual 1,200), D 100 = 550 from
    4 customers. In June: A's 50 subscription ends (contraction), B churns, D adds 30
    (expansion), E starts with 12 seats of 10 (new 120), F's trial converts at 80 on the
    15th (new), G's trial is canceled at its end, H's trial ends in July."""
    seats = [(priced(1_000, "prod_seats"), 1) for _ in range(12)]
    return [
        monthly("cus_a", "2024-01-01"), ended("cus_a", "2024-01-01", "2024-06-10", 5_000),
        ended("cus_b", "2024-01-01", "2024-06-15", 20_000),
        subscription("cus_c", [(priced(120_000, "prod_annual", "year"), 1)],
                     start="2024-03-01"),
        monthly("cus_d", "2024-02-01"), monthly("cus_d", "2024-06-20", 3_000),
        subscription("cus_e", seats, start="2024-06-05"),
        monthly("cus_f", "2024-06-01", 8_000, trial_end="2024-06-15"),
        monthly("cus_g", "2024-06-03", 8_000, trial_end="2024-06-17", status="canceled",
                ended_at="2024-06-17"),
        monthly("cus_h", "2024-06-20", 8_000, trial_end="2024-07-04", status="trialing"),
    ]


def test_subscription_analytics_on_a_hand_computed_month(warehouse, store):
    land(warehouse, CLIENT, "products", [{"id": "prod_seats", "object": "product",
                                          "created": 1704067200, "name": "Seats"}])
    land_subs(warehouse, june_book())
    june = figures(warehouse, store, "2024-06-01")
    got = {name: june[name].value for name in (
        "mrr", "customer_churn", "churn_rate", "customer_churn_rate", "mrr_churn_rate", "nrr",
        "grr", "arpa", "ltv", "quick_ratio", "new_trials", "trial_conversion_rate")}
    assert got == {
        "mrr": 530.0,  # 100 + 100 + 130 + 120 + 80
        "customer_churn": 1,  # B; A cancelling one of two subscriptions is not churn
        "churn_rate": 16.67,  # Stripe: 1 / (4 + 2 new)
        "customer_churn_rate": 25.0,  # ChartMogul: 1 / 4
        "mrr_churn_rate": 45.45,  # (200 churned + 50 contraction) / 550
        "nrr": 60.0,  # A 100 + B 0 + C 100 + D 130 = 330 / 550
        "grr": 54.55,  # A 100 + B 0 + C 100 + D 100 (expansion left out) = 300 / 550
        "arpa": 106.0,  # 530 / 5 paying customers
        "ltv": 424.0,  # 106 / 0.25
        "quick_ratio": 0.92,  # (120 + 80 new + 30 expansion) / (200 + 50)
        "new_trials": 3,  # F, G, H
        "trial_conversion_rate": 50.0,  # F of F and G; H's trial has not ended
    }
    assert june["ltv"].rows == [{"arpa": 106.0, "customer_churn_rate": 25.0, "ltv": 424.0,
                                 "formula": "ARPA / customer churn rate"}]
    assert june["nrr"].definition.startswith("ChartMogul")
    assert [(r["plan"], r["mrr"], r["subscriptions"]) for r in june["mrr_by_plan"].rows] == [
        ("prod_test", 310.0, 4), ("Seats", 120.0, 1), ("prod_annual", 100.0, 1)]
    # A period ending after today shows today's plans, as MRR shows today's MRR.
    ahead = figures(warehouse, store, "2024-06-01", "2024-07-15")["mrr_by_plan"]
    assert (ahead.value, len(ahead.rows)) == (530.0, 3)


def test_cohorts_by_first_paid_month(warehouse, store):
    land_subs(warehouse, june_book())
    half = figures(warehouse, store, "2024-01-01")["cohort_retention"]
    january = [r for r in half.rows if r["cohort"] == "2024-01"]
    assert [(r["month"], r["customers"], r["mrr"]) for r in january] == [
        (0, 2, 350.0), (1, 2, 350.0), (2, 2, 350.0), (3, 2, 350.0), (4, 2, 350.0),
        (5, 1, 100.0)]  # A and B; in June B churned and A's 50 ended
    assert (january[-1]["customers_pct"], january[-1]["mrr_pct"]) == (50.0, 28.57)
    assert {r["cohort"] for r in half.rows} == {"2024-01", "2024-02", "2024-03", "2024-06"}
    assert half.value == 100.0  # every cohort with a second month kept all its customers


def test_zero_decimal_currency(warehouse, store):
    land_subs(warehouse, [
        monthly("cus_x", "2024-01-01", 3_000, currency="jpy"),
        monthly("cus_y", "2024-01-01", 5_000, currency="jpy", status="canceled",
                ended_at="2024-06-10"),
    ])
    june = figures(warehouse, store, "2024-06-01", currency="jpy")
    assert (june["arpa"].value, june["customer_churn_rate"].value, june["ltv"].value,
            june["mrr_churn_rate"].value) == (3000, 50.0, 6000, 62.5)


def test_revenue_by_customer_country(warehouse, store):
    german = customer("2024-06-01", id="cus_de")
    german["address"] = {"country": "DE"}
    billed, carded = charge("2024-06-03", 5_000), charge("2024-06-04", 2_000)
    billed["billing_details"] = {"address": {"country": "FR"}}
    carded["payment_method_details"] = {"card": {"country": "jp"}}
    land(warehouse, CLIENT, "customers", [german])
    land(warehouse, CLIENT, "charges", [
        charge("2024-06-02", 10_000, customer="cus_de"), billed, carded,
        charge("2024-06-05", 700), charge("2024-06-06", 9_999, customer="cus_de",
                                          status="failed"),
        charge("2024-05-20", 4_000, customer="cus_de")])  # before the period
    build(warehouse, CLIENT, NOW)
    result = figures(warehouse, store, "2024-06-01")["revenue_by_country"]
    assert result.value == 177.0
    assert [(r["country"], r["gross"], r["payments"]) for r in result.rows] == [
        ("DE", 100.0, 1), ("FR", 50.0, 1), ("JP", 20.0, 1), ("unknown", 7.0, 1)]


def test_catalog_holds_the_contract_analytics_with_definitions():
    catalog = {w.name: w for w in widget_catalog()}
    built = {"customer_churn", "customer_churn_rate", "mrr_churn_rate", "nrr", "grr", "arpa",
             "ltv", "quick_ratio", "new_trials", "trial_conversion_rate", "mrr_by_plan",
             "revenue_by_country", "cohort_retention"}
    assert built <= set(catalog)
    rates = [w for w in catalog.values() if w.unit == "percent"]
    assert all(w.definition for w in rates), [w.name for w in rates if not w.definition]
    assert catalog["churn_rate"].describe()["definition"].startswith("Stripe")


def test_a_warehouse_built_before_the_new_columns_gets_them(warehouse, store):
    land_subs(warehouse, june_book())
    with warehouse.writer() as conn:  # as an older version left it
        conn.execute("ALTER TABLE reporting.mrr_daily DROP COLUMN churned_customers")
        conn.execute("ALTER TABLE reporting.payments DROP COLUMN country")
        conn.execute("DELETE FROM meta.schema_digests")
    build(warehouse, CLIENT, NOW)
    assert figures(warehouse, store, "2024-06-01")["customer_churn"].value == 1
