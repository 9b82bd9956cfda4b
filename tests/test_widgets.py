"""The widget catalog and runner: values, periods, currencies, states, client isolation."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from engine.connection_store import ConnectionStore
from engine.warehouse import Warehouse
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import (
    UnknownWidget,
    render,
    run_widget,
    run_widgets,
    widget_catalog,
)
from tests.test_reporting_support import (
    build,
    charge,
    customer,
    land,
    land_balance,
    price,
    refund,
    subscription,
)

NOW = datetime(2024, 6, 30, 18, tzinfo=UTC)
CONTRACT_WIDGETS = {
    "gross_volume", "net_volume", "refunds", "successful_payments", "failed_payments",
    "new_customers", "mrr", "arr", "active_subscriptions", "new_subscriptions",
    "churned_subscriptions", "churn_rate", "arpu", "available_balance", "pending_balance",
    "revenue_over_time", "mrr_over_time", "payouts",
}


@pytest.fixture()
def store(home):
    with ConnectionStore.from_settings() as opened:
        yield opened


@pytest.fixture()
def warehouse(home):
    return warehouse_from_settings()


def connect(store: ConnectionStore, client_id: str) -> None:
    store.save_connection(client_id, secret_key="sk_test_" + "a" * 24, account_id="acct_1",
                          livemode=False)
    store.record_sync(client_id, NOW - timedelta(minutes=10))


def fill_two_clients(warehouse: Warehouse) -> None:
    """alpha sells in USD (and a little JPY); beta sells ten times as much in EUR."""
    ada = customer("2024-06-02", name="Ada")
    land(warehouse, "alpha", "customers", [ada, customer("2024-05-05")])
    paid = charge("2024-06-10", 12_000, customer=ada["id"])
    land(warehouse, "alpha", "charges", [
        paid, charge("2024-06-20", 3_000), charge("2024-06-21", 900, status="failed"),
        charge("2024-05-15", 5_000),  # the previous 30 days
        charge("2024-06-11", 50_000, currency="jpy"),
    ])
    land(warehouse, "alpha", "refunds", [refund("2024-06-12", 2_000, paid["id"])])
    land(warehouse, "alpha", "subscriptions", [
        subscription(ada["id"], [(price(120_000, "year"), 1)], start="2024-03-01"),
    ])
    land_balance(warehouse, "alpha", datetime(2024, 6, 29, tzinfo=UTC), "usd", 45_600, 1_200)
    land(warehouse, "beta", "charges", [charge("2024-06-10", 150_000, currency="eur")])
    land(warehouse, "beta", "customers", [customer("2024-06-03") for _ in range(4)])
    for client in ("alpha", "beta"):
        build(warehouse, client, NOW)


def values(results) -> dict:
    return {r.widget: r.value for r in results}


def test_catalog_has_the_contract_widgets_declared_as_bound_queries():
    catalog = widget_catalog()
    names = {w.name for w in catalog}
    assert names >= CONTRACT_WIDGETS and "recent_payments" in names
    for widget in catalog:
        assert widget.kind in ("number", "line", "bar", "table")
        for sql in filter(None, (widget.value_sql, widget.rows_sql)):
            assert "$client_id" in sql, widget.name
            assert "{" not in sql and "'%s'" not in sql
    with pytest.raises(UnknownWidget, match="Known: gross_volume"):
        run_widget("alpha", "no_such_widget")


def test_values_previous_period_and_main_currency(warehouse, store):
    fill_two_clients(warehouse)
    connect(store, "alpha")
    results = {r.widget: r for r in run_widgets("alpha", warehouse=warehouse, store=store,
                                                now=NOW)}
    gross = results["gross_volume"]
    assert (gross.state, gross.currency, gross.value, gross.previous) == ("ok", "usd", 150.0, 50.0)
    assert (str(gross.start), str(gross.end)) == ("2024-06-01", "2024-06-30")
    got = {name: results[name].value for name in (
        "refunds", "net_volume", "successful_payments", "failed_payments", "new_customers",
        "mrr", "arr", "active_subscriptions", "arpu", "available_balance", "pending_balance")}
    assert got == {
        "refunds": 20.0, "net_volume": 130.0, "successful_payments": 2, "failed_payments": 1,
        "new_customers": 1, "mrr": 100.0, "arr": 1200.0, "active_subscriptions": 1,
        "arpu": 100.0, "available_balance": 456.0, "pending_balance": 12.0,
    }
    jpy = run_widget("alpha", "gross_volume", currency="JPY", warehouse=warehouse, store=store,
                     now=NOW)
    assert (jpy.currency, jpy.value) == ("jpy", 50_000)
    series = results["revenue_over_time"].rows
    assert len(series) == 30 and series[9] == {
        "day": "2024-06-10", "gross": 120.0, "net": 120.0, "refunds": 0.0}
    assert results["recent_payments"].rows[0]["amount"] == 9.0  # the latest: failed, 21 June


def test_a_new_period_changes_the_figures(warehouse, store):
    fill_two_clients(warehouse)
    may = run_widget("alpha", "gross_volume", "2024-05-01", "2024-05-31", warehouse=warehouse,
                     store=store, now=NOW)
    assert (may.value, may.previous) == (50.0, 0.0)
    one_day = run_widget("alpha", "gross_volume", "2024-06-20", "2024-06-20",
                         warehouse=warehouse, store=store, now=NOW)
    assert one_day.value == 30.0 and str(one_day.start) == "2024-06-20"


def test_each_client_sees_only_its_own_rows(warehouse, store):
    fill_two_clients(warehouse)
    beta = values(run_widgets("beta", warehouse=warehouse, store=store, now=NOW))
    assert beta["gross_volume"] == 1500.0 and beta["new_customers"] == 4
    # beta's euros are not alpha's: alpha never had any, and is told so rather than shown 0
    with pytest.raises(ValueError, match="'alpha' has no EUR payments: its currencies are USD"):
        run_widget("alpha", "gross_volume", currency="eur", warehouse=warehouse, store=store,
                   now=NOW)
    unknown = run_widget("gamma", "gross_volume", warehouse=warehouse, store=store, now=NOW)
    assert unknown.state == "no_data" and unknown.value is None
    # a hostile currency never reaches SQL: it is not three letters
    with pytest.raises(ValueError, match="is not a currency code"):
        run_widget("alpha", "gross_volume", currency="usd' OR '1'='1", warehouse=warehouse,
                   store=store, now=NOW)


def test_reconnect_required_shows_reason_and_steps_not_figures(warehouse, store):
    fill_two_clients(warehouse)
    connect(store, "alpha")
    store.record_check("alpha", ok=False, reason="The Stripe key was revoked.",
                       steps=["Create a new Secret key.", "Paste it in the report page."],
                       error_code="api_key_expired")
    for result in run_widgets("alpha", warehouse=warehouse, store=store, now=NOW):
        data = result.to_json()
        assert data["state"] == "reconnect_required"
        assert data["message"] == "The Stripe key was revoked."
        assert data["steps"] == ["Create a new Secret key.", "Paste it in the report page."]
        assert data["value"] is None and data["previous"] is None and data["rows"] == []


def test_stale_when_the_last_sync_is_older_than_the_schedule_allows(warehouse, store):
    fill_two_clients(warehouse)
    connect(store, "alpha")
    fresh = run_widget("alpha", "mrr", warehouse=warehouse, store=store, now=NOW)
    assert fresh.state == "ok"
    later = NOW + timedelta(hours=5)  # hourly schedule: stale after 2 h 15 min
    stale = run_widget("alpha", "mrr", warehouse=warehouse, store=store, now=later)
    assert stale.state == "stale" and stale.value == 100.0
    assert "sync alpha" in " ".join(stale.steps) and "5 hours ago" in stale.message
    assert stale.as_of == NOW  # the figures hold what had landed by their build


def test_no_data_before_any_build(warehouse, store):
    result = run_widget("alpha", "gross_volume", warehouse=warehouse, store=store, now=NOW)
    assert result.state == "no_data" and "stripe-reports sync alpha" in result.steps[0]


def test_json_csv_and_table_output(warehouse, store):
    fill_two_clients(warehouse)
    result = run_widget("alpha", "revenue_over_time", warehouse=warehouse, store=store, now=NOW)
    data = json.loads(render(result, "json"))
    assert list(data) == ["client", "widget", "state", "start", "end", "currency", "value",
                          "rows", "message", "steps", "as_of", "previous", "kind", "title",
                          "definition", "compare", "previous_start", "previous_end"]
    table = list(csv.DictReader(io.StringIO(render(result, "csv"))))
    assert len(table) == 30 and table[9]["gross"] == "120.0"
    text = render(result, "table")
    assert "value: $150.00" in text and "(+200.0%)" in text and "2024-06-10" in text
    number = render(run_widget("alpha", "mrr", warehouse=warehouse, store=store, now=NOW), "csv")
    assert "alpha,mrr,ok,2024-06-01,2024-06-30,usd,100.0" in number


def test_widgets_stay_fast_on_a_million_charges(warehouse, store):
    with warehouse.writer() as conn:
        conn.execute(
            "INSERT INTO stripe.charges (client_id, id, created, amount, amount_captured, "
            "currency, status, customer, is_deleted, raw, _synced_at) "
            "SELECT 'big', 'ch_' || i, TIMESTAMPTZ '2023-07-01 00:00:00+00' + "
            "INTERVAL (i * 31) SECOND, 1000 + i % 5000, 1000 + i % 5000, 'usd', "
            "CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'succeeded' END, 'cus_' || (i % 50000), "
            "false, '{}', now() FROM range(1000000) t(i)"
        )
    build(warehouse, "big", NOW)
    started = time.perf_counter()
    results = run_widgets("big", warehouse=warehouse, store=store, now=NOW)
    elapsed = time.perf_counter() - started
    gross = next(r for r in results if r.widget == "gross_volume")
    assert gross.state == "ok" and gross.value > 0
    assert elapsed < 2.0, f"all widgets took {elapsed:.2f}s"
