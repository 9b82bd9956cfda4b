"""Subscription analytics widgets on hand-computed cases (docs/metrics.md), in a real DuckDB
file: churn rates as Stripe and ChartMogul define them, retention, ARPA, LTV, trials."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.connection_store import ConnectionStore
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import render, run_widgets
from tests.test_reporting_support import build, customer, land, price, subscription

CLIENT = "acme"
END = date(2024, 6, 30)
NOW = datetime(2024, 6, 30, 18, tzinfo=UTC)


@pytest.fixture()
def store(home):
    with ConnectionStore.from_settings() as opened:
        opened.save_connection(CLIENT, secret_key="sk_test_" + "a" * 24, account_id="acct_1",
                               livemode=False)
        opened.record_sync(CLIENT, NOW - timedelta(minutes=10))
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
    assert figures(warehouse, store, "2024-01-01")["churn_rate"].value == 1.96  # year to date
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
