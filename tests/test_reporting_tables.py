"""The prepared tables other than MRR: revenue, payments, customers, balance, payouts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from engine.reporting import REPORTING_TABLES, build_reporting_tables
from engine.reporting.tables import ReportingTable
from tests.test_reporting_support import (
    balance_transaction,
    build,
    charge,
    customer,
    land,
    land_balance,
    payout,
    refund,
    temp_warehouse,
)

NOW = "2024-06-30T18:00:00"


@pytest.fixture()
def warehouse(tmp_path):
    return temp_warehouse(tmp_path)


def rows(warehouse, sql: str, *params) -> list[tuple]:
    with warehouse.reader() as conn:
        return conn.execute(sql, list(params)).fetchall()


def test_daily_revenue_in_major_units_per_currency(warehouse):
    paid = charge("2024-06-10", 10_000, id="ch_paid")
    land(warehouse, "acme", "charges", [
        paid,
        charge("2024-06-10", 2_550),
        charge("2024-06-10T23:59:00", 4_000, status="failed"),
        charge("2024-06-11T00:00:01", 5_000, currency="jpy"),  # ¥5,000, not ¥50
    ])
    land(warehouse, "acme", "refunds", [
        refund("2024-06-12", 3_000, "ch_paid"),
        refund("2024-06-12", 999, "ch_paid", status="failed"),
    ])
    land(warehouse, "acme", "balance_transactions", [
        balance_transaction("2024-06-10", 10_000, 320),
        balance_transaction("2024-06-10", 2_550, 104),
        balance_transaction("2024-06-14", -1_500, 1_500, type="adjustment",
                            reporting_category="dispute"),
    ])
    build(warehouse, "acme", NOW)
    got = {
        (day.isoformat(), cur): (gross, refunds, disputes, fees, net, ok, failed)
        for day, cur, gross, refunds, disputes, fees, net, ok, failed in rows(
            warehouse,
            "SELECT day, currency, gross, refunds, disputes, fees, net, successful_payments, "
            "failed_payments FROM reporting.daily_revenue WHERE client_id = 'acme'")
    }
    d = Decimal
    assert got[("2024-06-10", "usd")] == (d("125.50"), 0, 0, d("4.24"), d("121.26"), 2, 1)
    assert got[("2024-06-11", "jpy")] == (d("5000"), 0, 0, 0, d("5000"), 1, 0)
    assert got[("2024-06-12", "usd")] == (0, d("30.00"), 0, 0, d("-30.00"), 0, 0)
    assert got[("2024-06-14", "usd")][2] == d("15.00")  # the disputed amount withdrawn


def test_payments_customers_balance_payouts_and_main_currency(warehouse):
    buyer = customer("2024-06-01", email="ada@example.com", name="Ada")
    land(warehouse, "acme", "customers", [
        buyer, customer("2024-06-01"), customer("2024-06-03"),
        customer("2024-06-03", deleted=True),
    ])
    land(warehouse, "acme", "charges", [
        charge("2024-06-02", 1_000, customer=buyer["id"], description="Pro plan"),
        charge("2024-06-02", 1_000), charge("2024-06-02", 900, currency="eur"),
    ])
    land(warehouse, "acme", "payouts", [
        payout("2024-06-05", 150_000, arrival="2024-06-07"),
        payout("2024-06-06", 1_000, status="failed"),
    ])
    land_balance(warehouse, "acme", datetime(2024, 6, 30, 9, tzinfo=UTC), "usd", 12_345, 678)
    build(warehouse, "acme", NOW)

    assert rows(warehouse, "SELECT customer_name, customer_email, amount FROM reporting.payments "
                "WHERE customer IS NOT NULL") == [("Ada", "ada@example.com", Decimal("10"))]
    assert rows(warehouse, "SELECT day, new_customers, total_customers FROM "
                "reporting.customer_counts ORDER BY day") == [
        (date(2024, 6, 1), 2, 2), (date(2024, 6, 3), 1, 3)]
    assert rows(warehouse, "SELECT currency, available, pending FROM reporting.balance") == [
        ("usd", Decimal("123.45"), Decimal("6.78"))]
    assert rows(warehouse, "SELECT arrival_day, amount, status FROM reporting.payouts "
                "ORDER BY amount DESC")[0] == (date(2024, 6, 7), Decimal("1500"), "paid")
    assert rows(warehouse, "SELECT currency, exponent, is_main FROM reporting.currencies "
                "ORDER BY currency") == [("eur", 2, False), ("usd", 2, True)]


def test_rebuild_replaces_only_that_clients_rows(warehouse):
    land(warehouse, "alpha", "charges", [charge("2024-06-02", 1_000)])
    land(warehouse, "beta", "charges", [charge("2024-06-02", 7_000)])
    build(warehouse, "alpha", NOW)
    build(warehouse, "beta", NOW)
    land(warehouse, "alpha", "charges", [charge("2024-06-02", 500)])
    build(warehouse, "alpha", NOW)
    assert rows(warehouse, "SELECT client_id, gross FROM reporting.daily_revenue "
                "ORDER BY client_id") == [("alpha", Decimal("15")), ("beta", Decimal("70"))]


class _BrokenTable(ReportingTable):
    def select_sql(self) -> str:
        return "SELECT no_such_column FROM stripe.charges"


def test_a_failing_build_leaves_the_previous_tables(warehouse):
    land(warehouse, "acme", "charges", [charge("2024-06-02", 1_000)])
    build(warehouse, "acme", NOW)
    land(warehouse, "acme", "charges", [charge("2024-06-02", 9_000)])
    # every table rebuilt, then one whose SQL fails: the whole build rolls back
    tables = (*REPORTING_TABLES, _BrokenTable("daily_revenue", "", (), ()))
    with warehouse.writer() as conn, pytest.raises(Exception, match="no_such_column"):
        build_reporting_tables(conn, "acme", tables=tables)
    assert rows(warehouse, "SELECT gross FROM reporting.daily_revenue") == [(Decimal("10"),)]
