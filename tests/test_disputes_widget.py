"""The disputes widget on hand-computed cases (docs/metrics.md, "Disputes"): Stripe's
dispute rate, the disputes' count and amount, in a zero-decimal currency (JPY) and in USD,
with a refund and a dispute on the same charge; then end to end from the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import render, run_widgets
from tests.test_reporting_support import build, charge, connected_store, land, refund, ts

CLIENT = "acme"
NOW = datetime(2024, 6, 30, 18, tzinfo=UTC)


@pytest.fixture()
def store(home):
    with connected_store(CLIENT, NOW - timedelta(minutes=10)) as opened:
        yield opened


@pytest.fixture()
def warehouse(home):
    return warehouse_from_settings()


def dispute(created: str, charge_id: str, amount: int, status: str, *,
            currency: str = "jpy") -> dict:
    return {"id": f"dp_{charge_id}", "object": "dispute", "created": ts(created),
            "charge": charge_id, "amount": amount, "currency": currency, "status": status,
            "reason": "fraudulent", "evidence_details": {"due_by": ts(created) + 86_400 * 14}}


def june_disputes(warehouse) -> None:
    """JPY (no decimals), June 2024:
    a ¥5,000 (3 June), ¥1,000 refunded on the 4th, the rest (¥4,000) disputed on the 10th;
    b ¥3,000 (5th), disputed on the 12th; c ¥2,000 (6th), an inquiry only (not counted);
    d ¥1,200 (7th); e ¥900 failed (8th); f ¥7,000 paid in May, disputed on 2 June.
    USD: g $10.50 (10th) disputed in full on the 20th, h $20.00 (11th)."""
    charges = [
        charge("2024-06-03", 5_000, currency="jpy", id="ch_a", amount_refunded=1_000),
        charge("2024-06-05", 3_000, currency="jpy", id="ch_b"),
        charge("2024-06-06", 2_000, currency="jpy", id="ch_c"),
        charge("2024-06-07", 1_200, currency="jpy", id="ch_d"),
        charge("2024-06-08", 900, currency="jpy", id="ch_e", status="failed"),
        charge("2024-05-20", 7_000, currency="jpy", id="ch_f"),
        charge("2024-06-10", 1_050, currency="usd", id="ch_g"),
        charge("2024-06-11", 2_000, currency="usd", id="ch_h"),
    ]
    land(warehouse, CLIENT, "charges", charges)
    land(warehouse, CLIENT, "refunds", [refund("2024-06-04", 1_000, "ch_a", currency="jpy")])
    land(warehouse, CLIENT, "disputes", [
        dispute("2024-06-10", "ch_a", 4_000, "lost"),
        dispute("2024-06-12", "ch_b", 3_000, "needs_response"),
        dispute("2024-06-13", "ch_c", 2_000, "warning_needs_response"),
        dispute("2024-06-02", "ch_f", 7_000, "won"),
        dispute("2024-06-20", "ch_g", 1_050, "under_review", currency="usd"),
    ])
    build(warehouse, CLIENT, NOW)


def disputes(store, warehouse, start: str, end: str, currency: str):
    return run_widgets(CLIENT, ["disputes"], start, end, currency, warehouse=warehouse,
                       store=store, now=NOW)[0]


def test_dispute_rate_count_and_amount_in_yen(warehouse, store):
    june_disputes(warehouse)
    june = disputes(store, warehouse, "2024-06-01", "2024-06-30", "jpy")
    # Disputed in June: a, b and f (c is an inquiry); paid in June: a, b, c, d (e failed,
    # f was paid in May). 3 / 4. The refund on a changes neither count.
    assert june.value == 75.0 and june.unit == "percent"
    assert june.rows == [{"disputes": 3, "amount": 14_000.0, "disputed_charges": 3,
                          "successful_payments": 4}]
    assert june.definition.startswith("Stripe, dispute rate")
    # May (2 to 31 May): f paid, nothing disputed.
    assert june.previous == 0.0
    assert "75.0%" in render(june, "table") and "+75.0 pp" in render(june, "table")
    # The first half of June: a and f disputed (b on the 12th is after), a to d paid.
    assert disputes(store, warehouse, "2024-06-01", "2024-06-11", "jpy").value == 50.0


def test_dispute_rate_in_dollars_keeps_the_cents(warehouse, store):
    june_disputes(warehouse)
    usd = disputes(store, warehouse, "2024-06-01", "2024-06-30", "usd")
    assert usd.value == 50.0
    assert usd.rows == [{"disputes": 1, "amount": 10.5, "disputed_charges": 1,
                         "successful_payments": 2}]


def test_no_disputes_is_a_zero_rate_and_no_payments_no_rate(warehouse, store):
    june_disputes(warehouse)
    july = disputes(store, warehouse, "2024-07-01", "2024-07-10", "jpy")
    assert july.value is None  # no successful charge: no rate, never a division by zero
    may = disputes(store, warehouse, "2024-05-01", "2024-05-31", "jpy")
    assert may.value == 0.0 and may.rows[0]["disputes"] == 0
