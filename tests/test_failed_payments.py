"""Delinquent churn and MRR recovered on hand-computed cases (docs/metrics.md, "Failed
payments"), from Stripe-shaped subscriptions and invoices in a real DuckDB file."""

from __future__ import annotations

from datetime import date

from engine.connection_store import ConnectionStore
from reports.widgets import run_widgets
from tests.test_reporting_support import build, land, price, subscription, ts
from tests.test_subscription_metrics import (
    CLIENT,
    NOW,
    figures,
    land_subs,
    monthly,
    store,
    warehouse,
)

__all__ = ["store", "warehouse"]  # the fixtures, shared with test_subscription_metrics


def invoice(sub: dict, created: str, amount: int, *, status: str = "paid", attempts: int = 1,
            paid_at: str | None = None, billing_reason: str = "subscription_cycle",
            period_start: str | None = None) -> dict:
    """An invoice of `sub`, in the newer API's shape (subscription under `parent`)."""
    paid = status == "paid"
    return {
        "id": f"in_{sub['id']}_{created}", "object": "invoice", "created": ts(created),
        "customer": sub["customer"], "currency": sub["currency"], "status": status,
        "parent": {"type": "subscription_details",
                   "subscription_details": {"subscription": sub["id"]}},
        "amount_due": amount, "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount, "total": amount,
        "attempted": True, "attempt_count": attempts, "billing_reason": billing_reason,
        "period_start": ts(period_start or created), "period_end": ts(period_start or created),
        "status_transitions": {"finalized_at": ts(created),
                               "paid_at": ts(paid_at or created) if paid else None},
    }


def failed_out(customer_id: str, start: str, ended: str, amount: int, **kwargs) -> dict:
    """A subscription Stripe canceled after its last payment retry failed."""
    sub = monthly(customer_id, start, amount, status="canceled", ended_at=ended, **kwargs)
    sub["cancellation_details"] = {"comment": None, "feedback": None, "reason": "payment_failed"}
    return sub


def june() -> tuple[list[dict], list[dict]]:
    """USD, June 2024. A (100) fails on 1 June and pays on the 4th: recovered. B (200) fails
    and is canceled by Stripe on the 20th. C has two subscriptions, 80 and 50; the 50 one is
    canceled for failed payment on the 12th, the 80 one goes on. D (30) pays at once and
    cancels by request on the 25th. E's first invoice and F's first after its trial both
    fail and are paid later: not recurring payments, so not recoveries."""
    a, b = monthly("cus_a", "2024-01-01"), failed_out("cus_b", "2024-01-01", "2024-06-20", 20_000)
    c_kept = monthly("cus_c", "2024-01-01", 8_000)
    c_lost = failed_out("cus_c", "2024-01-01", "2024-06-12", 5_000)
    d = monthly("cus_d", "2024-01-01", 3_000, status="canceled", ended_at="2024-06-25")
    d["cancellation_details"] = {"reason": "cancellation_requested"}
    e = monthly("cus_e", "2024-06-05", 4_000)
    f = monthly("cus_f", "2024-05-20", 6_000, trial_end="2024-06-03")
    invoices = [
        invoice(a, "2024-05-01", 10_000),
        invoice(a, "2024-06-01", 10_000, attempts=2, paid_at="2024-06-04"),
        invoice(b, "2024-06-01", 20_000, status="open", attempts=4),
        invoice(c_lost, "2024-06-01", 5_000, status="void", attempts=4),
        invoice(c_kept, "2024-06-01", 8_000),
        invoice(d, "2024-06-01", 3_000),
        invoice(e, "2024-06-05", 4_000, attempts=2, paid_at="2024-06-06",
                billing_reason="subscription_create"),
        invoice(f, "2024-06-03", 6_000, attempts=3, paid_at="2024-06-08",
                period_start="2024-06-03"),
    ]
    return [a, b, c_kept, c_lost, d, e, f], invoices


def land_book(warehouse, subs: list[dict], invoices: list[dict]) -> None:
    land(warehouse, CLIENT, "invoices", invoices)
    land_subs(warehouse, subs)  # builds the reporting tables


def test_delinquent_churn_and_recovered_mrr_by_hand(warehouse, store):
    land_book(warehouse, *june())
    got = figures(warehouse, store, "2024-06-01")
    churn, recovered = got["delinquent_churn"], got["mrr_recovered"]
    # B 200 + C's 50: C still pays 80, so C is no churned customer, but that subscription
    # was lost to a failed payment. D cancelled by request: not delinquent.
    assert churn.value == 250.0
    assert [(r["day"], r["customer"], r["reason"], r["mrr"], r["amount_due"])
            for r in churn.rows] == [
        ("2024-06-12", "cus_c", "payment_failed", 50.0, 50.0),
        ("2024-06-20", "cus_b", "payment_failed", 200.0, 200.0)]
    assert got["customer_churn"].value == 2  # B and D; C kept paying
    # A failed on 1 June, paid on the 4th at the second attempt.
    assert recovered.value == 100.0
    assert [(r["day"], r["customer"], r["attempts"], r["amount_paid"])
            for r in recovered.rows] == [("2024-06-04", "cus_a", 2, 100.0)]
    assert churn.definition.startswith("Stripe Billing")
    assert recovered.definition.startswith("Stripe Billing revenue recovery analytics")
    # May had neither: the comparison is with zero, not with nothing.
    assert (churn.previous, recovered.previous) == (0.0, 0.0)


def test_a_failure_recovered_in_a_later_period_counts_there(warehouse, store):
    subs, invoices = june()
    land_book(warehouse, subs, invoices)
    may = figures(warehouse, store, "2024-05-01", "2024-05-31")
    assert (may["mrr_recovered"].value, may["delinquent_churn"].value) == (0.0, 0.0)
    first_days = figures(warehouse, store, "2024-06-01", "2024-06-03")
    assert first_days["mrr_recovered"].value == 0.0  # failed on the 1st, not yet paid
    assert figures(warehouse, store, "2024-06-04", "2024-06-04")["mrr_recovered"].value == 100.0


def test_a_subscription_marked_unpaid_is_delinquent_churn_from_the_day_seen(warehouse, store):
    subs, invoices = june()
    unpaid = monthly("cus_h", "2024-01-01", 4_000, status="unpaid")
    land_book(warehouse, [*subs, unpaid], [*invoices,
              invoice(unpaid, "2024-06-01", 4_000, status="open", attempts=4)])
    churn = figures(warehouse, store, "2024-06-01")["delinquent_churn"]
    assert churn.value == 290.0  # B 200 + C 50 + H 40
    assert ("2024-06-30", "cus_h", "unpaid") in [
        (r["day"], r["customer"], r["reason"]) for r in churn.rows]


def test_zero_decimal_currency(warehouse, store):
    x = monthly("cus_x", "2024-01-01", 3_000, currency="jpy")
    y = failed_out("cus_y", "2024-01-01", "2024-06-10", 5_000, currency="jpy")
    land_book(warehouse, [x, y], [
        invoice(x, "2024-06-01", 3_000, attempts=3, paid_at="2024-06-05"),
        invoice(y, "2024-06-01", 5_000, status="open", attempts=4)])
    got = figures(warehouse, store, "2024-06-01", currency="jpy")
    assert (got["delinquent_churn"].value, got["mrr_recovered"].value) == (5000, 3000)
    assert got["mrr_recovered"].rows[0]["amount_paid"] == 3000  # ¥3,000, not ¥30
    with warehouse.reader() as conn:
        assert conn.execute(
            "SELECT amount, amount_minor FROM reporting.delinquency WHERE outcome = 'recovered'"
        ).fetchone() == (3000, 3000)


def test_no_failed_payments_is_zero_not_missing(warehouse, store):
    land_book(warehouse, [monthly("cus_a", "2024-01-01")], [])
    got = figures(warehouse, store, "2024-06-01")
    assert (got["delinquent_churn"].state, got["delinquent_churn"].value) == ("ok", 0.0)
    assert got["mrr_recovered"].value == 0.0


def test_annual_plan_recovery_counts_its_monthly_value(warehouse, store):
    annual = subscription("cus_z", [(price(120_000, "year"), 1)], start="2023-06-15")
    land_book(warehouse, [annual], [
        invoice(annual, "2024-06-15", 120_000, attempts=2, paid_at="2024-06-18")])
    got = figures(warehouse, store, "2024-06-01")["mrr_recovered"]
    assert (got.value, got.rows[0]["amount_paid"]) == (100.0, 1200.0)
    assert date.fromisoformat(got.rows[0]["day"]) == date(2024, 6, 18)
    build(warehouse, CLIENT, NOW)  # a rebuild gives the same rows, not twice as many
    assert len(figures(warehouse, store, "2024-06-01")["mrr_recovered"].rows) == 1


# -- through the sandbox: Stripe-shaped failed payments, synced ------------------------------


def test_a_synced_sandbox_has_both_and_the_widgets_find_exactly_them(sandbox_factory, home):
    from datetime import UTC, datetime

    from engine.streams import STREAMS_BY_NAME
    from engine.warehouse_factory import warehouse_from_settings
    from sandbox import AccountSpec
    from tests.sync_helpers import run_sync, source_objects

    server = sandbox_factory([AccountSpec("acme", charges=50, customers=60, subscriptions=120)])
    warehouse = warehouse_from_settings()
    assert not run_sync(server, "acme", warehouse).errors
    build(warehouse, "acme", datetime.now(UTC))
    subs = source_objects(server, "acme", STREAMS_BY_NAME["subscriptions"])
    invoices = source_objects(server, "acme", STREAMS_BY_NAME["invoices"])
    failed_out = {i for i, s in subs.items() if s["status"] == "canceled"
                  and (s.get("cancellation_details") or {}).get("reason") == "payment_failed"}
    recovered = {i for i, inv in invoices.items() if inv["status"] == "paid"
                 and inv["attempt_count"] > 1 and inv["billing_reason"] != "subscription_create"}
    assert failed_out and recovered  # the sandbox produces both
    # Stripe's shapes: the latest invoice of a subscription canceled for failed payment is
    # unpaid after its retries; a recovered one was paid days after it was created.
    for sub_id in failed_out:
        latest = invoices[subs[sub_id]["latest_invoice"]]
        assert (latest["status"], latest["amount_paid"]) == ("open", 0)
    for inv_id in recovered:
        inv = invoices[inv_id]
        assert inv["status_transitions"]["paid_at"] > inv["created"] + 86_400
    with warehouse.reader() as conn:
        rows = conn.execute("SELECT outcome, subscription_id, invoice_id FROM "
                            "reporting.delinquency WHERE client_id = 'acme'").fetchall()
    assert {s for o, s, _ in rows if o == "churned"} == failed_out
    assert {i for o, _, i in rows if o == "recovered"} == recovered
    with ConnectionStore.from_settings() as opened:
        opened.save_connection("acme", secret_key="sk_test_" + "a" * 24, account_id="acct_1",
                               livemode=False)
        opened.record_sync("acme", datetime.now(UTC))
        results = {r.widget: r for r in run_widgets(
            "acme", ["delinquent_churn", "mrr_recovered"], "2020-01-01", None,
            warehouse=warehouse, store=opened)}
    assert results["delinquent_churn"].value > 0 and results["mrr_recovered"].value > 0
    assert len({r["subscription_id"] for r in results["delinquent_churn"].rows}) == len(
        failed_out)
