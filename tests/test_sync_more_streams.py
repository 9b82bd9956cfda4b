"""The streams the subscription metrics need (disputes, coupons, credit notes, payment
intents, invoice lines) and the lists Stripe embeds only in part (a subscription's items
past 10, an invoice's lines), synced from the sandbox: exactly what it lists after a first
sync, and after creates, updates and deletions between two syncs."""

from __future__ import annotations

from engine.reconcile import reconcile
from engine.streams import STREAMS_BY_NAME
from sandbox import AccountSpec
from tests.sync_helpers import (
    compare_with_source,
    new_warehouse,
    run_sync,
    source_objects,
)
from tests.test_sync_sandbox import settle

NEW = ("disputes", "coupons", "credit_notes", "payment_intents")
CHECKED = [STREAMS_BY_NAME[name] for name in (*NEW, "charges", "subscriptions", "invoices")]


def _rows(warehouse, sql: str, *params) -> list[tuple]:
    with warehouse.reader() as conn:
        return conn.execute(sql, list(params)).fetchall()


def _ids_of(server, name: str, stream: str) -> list[str]:
    return sorted(source_objects(server, name, STREAMS_BY_NAME[stream]))


def _succeeded_charges(server, name: str) -> list[dict]:
    charges = source_objects(server, name, STREAMS_BY_NAME["charges"])
    return sorted((c for c in charges.values() if c["status"] == "succeeded"),
                  key=lambda c: c["id"])


def _long_subscription(world, name: str, server, items: int) -> dict:
    customer = _ids_of(server, name, "customers")[0]
    prices = [p for p in source_objects(server, name, STREAMS_BY_NAME["prices"]).values()
              if p["type"] == "recurring" and p["recurring"]["interval"] == "month"]
    return world.create_subscription(
        name, customer, [(prices[k % len(prices)]["id"], k + 1) for k in range(items)])


def _long_invoice(world, name: str, server, lines: int) -> dict:
    customer = _ids_of(server, name, "customers")[1]
    return world.create_invoice(name, customer,
                                [(f"Consulting hour {k + 1}", 1000 + k) for k in range(lines)])


def test_first_sync_lands_the_new_streams_and_every_item_and_line(sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=300, customers=30)])
    world = server.world
    paid = _succeeded_charges(server, "acme")
    lost = world.dispute_charge("acme", paid[0]["id"])
    world.dispute_charge("acme", paid[1]["id"], amount=paid[1]["amount"] // 2,
                         reason="product_not_received")
    world.close_dispute("acme", lost["id"], won=False)
    world.create_coupon("acme", percent_off=15.5, coupon_name="Spring")
    invoice = next(iter(source_objects(server, "acme", STREAMS_BY_NAME["invoices"]).values()))
    world.create_credit_note("acme", invoice["id"], 300, reason="order_change")
    twelve = _long_subscription(world, "acme", server, 12)
    fifty_five = _long_invoice(world, "acme", server, 55)
    assert twelve["items"]["has_more"] and len(twelve["items"]["data"]) == 10
    assert fifty_five["lines"]["has_more"] and len(fifty_five["lines"]["data"]) == 10
    settle()

    warehouse = new_warehouse(tmp_path)
    report = run_sync(server, "acme", warehouse)

    assert not report.errors
    assert compare_with_source(server, "acme", warehouse,
                               streams=CHECKED) == []
    assert report.streams["disputes"].inserted == 2
    assert report.streams["payment_intents"].inserted == 300
    items = _rows(warehouse, "SELECT id, quantity FROM stripe.subscription_items "
                  "WHERE subscription = ? ORDER BY quantity", twelve["id"])
    assert [q for _, q in items] == list(range(1, 13))
    assert len({i for i, _ in items}) == 12
    lines = _rows(warehouse, "SELECT count(*), count(DISTINCT id), sum(amount) "
                  "FROM stripe.invoice_line_items WHERE invoice = ?", fifty_five["id"])
    assert lines == [(55, 55, sum(1000 + k for k in range(55)))]
    assert _rows(warehouse, "SELECT status, amount, reason FROM stripe.disputes "
                 "WHERE id = ?", lost["id"]) == [("lost", paid[0]["amount"], "fraudulent")]
    assert _rows(warehouse, "SELECT percent_off, name FROM stripe.coupons WHERE name = ?",
                 "Spring") == [(15.5, "Spring")]


def test_creates_updates_and_deletions_between_two_syncs_land_exactly(sandbox_factory,
                                                                      tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=200, customers=25)])
    world = server.world
    twelve = _long_subscription(world, "acme", server, 12)
    won = world.dispute_charge("acme", _succeeded_charges(server, "acme")[0]["id"])
    settle()
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    assert compare_with_source(server, "acme", warehouse, streams=CHECKED) == []

    # Creates, updates and deletions of every new stream, and of long lists.
    world.close_dispute("acme", won["id"], won=True)
    world.dispute_charge("acme", _succeeded_charges(server, "acme")[1]["id"])
    coupons = _ids_of(server, "acme", "coupons")
    world.update_coupon("acme", coupons[0], "Renamed")
    world.delete_coupon("acme", coupons[1])
    made = world.create_coupon("acme", amount_off=500, duration="once")
    invoices = list(source_objects(server, "acme", STREAMS_BY_NAME["invoices"]).values())
    voided = world.create_credit_note("acme", invoices[0]["id"], 100)
    world.create_credit_note("acme", invoices[1]["id"], 250)
    world.void_credit_note("acme", voided["id"])
    world.add_charges("acme", 7)
    embedded_one = twelve["items"]["data"][3]["id"]
    world.remove_subscription_item("acme", twelve["id"], embedded_one)
    prices = _ids_of(server, "acme", "prices")
    world.add_subscription_item("acme", twelve["id"], prices[0], 40)
    world.add_subscription_item("acme", twelve["id"], prices[1], 41)
    fifty_five = _long_invoice(world, "acme", server, 55)
    draft = _long_invoice(world, "acme", server, 12)
    world.delete_invoice("acme", draft["id"])
    settle()

    report = run_sync(server, "acme", warehouse)

    assert not report.errors
    assert compare_with_source(server, "acme", warehouse, streams=CHECKED,
                               deleted=[coupons[1], draft["id"]]) == []
    assert report.streams["payment_intents"].inserted == 7
    assert report.streams["coupons"].deleted == 1 and report.streams["invoices"].deleted == 1
    assert report.streams["disputes"].events_applied == 2
    assert report.streams["credit_notes"].inserted == 2
    # Every event was applied incrementally: nothing listed in full.
    assert {r.full_refresh_reason for r in report.streams.values()} == {None}
    items = _rows(warehouse, "SELECT id, quantity FROM stripe.subscription_items "
                  "WHERE subscription = ?", twelve["id"])
    assert len(items) == 13 and embedded_one not in {i for i, _ in items}
    assert {q for _, q in items} >= {40, 41}
    assert _rows(warehouse, "SELECT count(*), sum(amount) FROM stripe.invoice_line_items "
                 "WHERE invoice = ?", fifty_five["id"]) == [(55, sum(1000 + k for k in range(55)))]
    assert _rows(warehouse, "SELECT status FROM stripe.disputes WHERE id = ?",
                 won["id"]) == [("won",)]
    assert _rows(warehouse, "SELECT status, voided_at IS NOT NULL FROM stripe.credit_notes "
                 "WHERE id = ?", voided["id"]) == [("void", True)]
    assert _rows(warehouse, "SELECT amount_off, duration FROM stripe.coupons WHERE id = ?",
                 made["id"]) == [(500, "once")]
    # The disputes moved the balance through balance transactions, as Stripe's do: the
    # balance still reconciles with them (and reporting.daily_revenue counts them).
    with warehouse.reader() as conn:
        assert reconcile(conn, "acme") == []
