"""Amounts named by unit in reporting.* (docs/metrics.md, Conventions): money in major
units under Stripe's names, and where a row is one Stripe object the integer Stripe sent
beside it as `<name>_minor`; every comment says which unit."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from engine.reporting.tables import MONEY, REPORTING_TABLES
from tests.test_reporting_support import (
    build,
    charge,
    land,
    land_balance,
    payout,
    temp_warehouse,
)

NOW = "2024-06-30T18:00:00"


def test_the_convention_holds_for_every_reporting_column():
    for table in REPORTING_TABLES:
        columns = {c.name: c for c in table.columns}
        for column in table.columns:
            if column.type == MONEY:
                assert "major units" in column.description, (table.name, column.name)
            if column.name.endswith("_minor"):
                major = column.name.removesuffix("_minor")
                assert column.type == "BIGINT", (table.name, column.name)
                assert columns[major].type == MONEY, (table.name, column.name)
                assert "minor unit" in column.description


def test_minor_beside_major_in_a_two_and_a_zero_decimal_currency(tmp_path):
    warehouse = temp_warehouse(tmp_path)
    land(warehouse, "acme", "charges", [
        charge("2024-06-10", 1_234, id="ch_usd", amount_refunded=234),
        charge("2024-06-10", 1_234, id="ch_jpy", currency="jpy")])
    land(warehouse, "acme", "payouts", [payout("2024-06-05", 5_000, currency="jpy")])
    land_balance(warehouse, "acme", datetime(2024, 6, 30, 12, tzinfo=UTC), "usd", 987, 65)
    build(warehouse, "acme", NOW)
    with warehouse.reader() as conn:
        payments = conn.execute(
            "SELECT id, amount, amount_minor, amount_refunded, amount_refunded_minor "
            "FROM reporting.payments ORDER BY id").fetchall()
        payouts = conn.execute("SELECT amount, amount_minor FROM reporting.payouts").fetchall()
        balance = conn.execute("SELECT available, available_minor, pending, pending_minor "
                               "FROM reporting.balance").fetchall()
    assert payments == [("ch_jpy", Decimal(1234), 1234, Decimal(0), 0),
                        ("ch_usd", Decimal("12.34"), 1234, Decimal("2.34"), 234)]
    assert payouts == [(Decimal(5000), 5000)]  # ¥5,000
    assert balance == [(Decimal("9.87"), 987, Decimal("0.65"), 65)]
