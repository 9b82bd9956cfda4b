"""One events listing carries every stream's changes: nothing is missed, nothing is asked twice.

Between two syncs, objects are created, changed and deleted on every stream (deleted where
Stripe allows it); the second sync lists the events once for all streams, and every table
then equals what the sandbox lists. A third sync, with nothing new, costs at most 5
requests by the sandbox's own count: no stream lists its objects but balance transactions
(they have no events).
"""

from __future__ import annotations

import time

import engine.sync
from engine.pager import event_type_groups
from engine.streams import STREAMS, STREAMS_BY_NAME
from engine.sync import EVENTS_TOO_OLD, SETTLE_SECONDS
from engine.warehouse import read_state, save_state
from sandbox import AccountSpec
from tests.sync_helpers import compare_with_source, new_warehouse, run_sync, source_objects

# What a no-change client may cost: the key check, the events, the balance, and the
# balance transactions (no events), with one to spare.
NO_CHANGE_REQUESTS = 5


def _requests_by_path(server) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (_account, path), n in server.stats()["by_account_path"].items():
        counts[path] = counts.get(path, 0) + n
    return counts


def _change_every_stream(server, name: str) -> set[str]:
    """Creates, updates and deletions on every stream; the ids deleted."""
    world = server.world

    def ids(stream: str) -> list[str]:
        return sorted(source_objects(server, name, STREAMS_BY_NAME[stream]))

    customers, products, prices = ids("customers"), ids("products"), ids("prices")
    invoices, payouts = ids("invoices"), ids("payouts")
    subscriptions = source_objects(server, name, STREAMS_BY_NAME["subscriptions"])
    charges = source_objects(server, name, STREAMS_BY_NAME["charges"])
    refundable = [c for c in charges.values() if c["status"] == "succeeded" and not c["refunded"]]

    # charges, balance transactions (each succeeded charge, each refund has one), refunds
    world.add_charges(name, 12)
    world.change_object(name, "charges", refundable[0]["id"], "charge.updated",
                        description="changed between syncs")
    refund = world.refund_charge(name, refundable[1]["id"])
    world.change_object(name, "refunds", refund["id"], "refund.updated",
                        metadata={"note": "updated"})
    # customers
    world.create_customer(name, email="new@example.com")
    world.update_customer(name, customers[0], email="renamed@example.com")
    world.delete_customer(name, customers[1])
    # subscriptions (and their items)
    world.create_object(name, "subscriptions", "customer.subscription.created",
                        status="active")
    active = sorted(s for s, o in subscriptions.items() if o["status"] == "active")
    world.cancel_subscription(name, active[0])
    world.set_cancel_at_period_end(name, active[1], True)
    # invoices
    world.create_object(name, "invoices", "invoice.created", status="draft")
    world.change_object(name, "invoices", invoices[0], "invoice.updated",
                        description="updated between syncs")
    world.delete_object(name, "invoices", invoices[1], "invoice.deleted")
    # payouts
    world.create_object(name, "payouts", "payout.created", status="pending")
    world.change_object(name, "payouts", payouts[0], "payout.updated",
                        description="updated between syncs")
    # products and prices
    world.create_object(name, "products", "product.created", name="New product")
    world.change_object(name, "products", products[0], "product.updated", active=False)
    world.delete_object(name, "products", products[1], "product.deleted")
    world.create_object(name, "prices", "price.created", nickname="new price")
    world.change_object(name, "prices", prices[0], "price.updated", nickname="renamed")
    world.delete_object(name, "prices", prices[1], "price.deleted")
    # payment intents come with the new charges; a dispute on an older charge (Stripe sends
    # no charge.updated for it: the charge is fetched again), coupons, credit notes
    dispute = world.dispute_charge(name, refundable[2]["id"])
    world.close_dispute(name, dispute["id"], won=True)
    coupons = ids("coupons")
    world.update_coupon(name, coupons[0], "Renamed")
    world.delete_coupon(name, coupons[1])
    world.create_coupon(name, percent_off=20, coupon_name="New")
    finalized = sorted(i for i, o in source_objects(
        server, name, STREAMS_BY_NAME["invoices"]).items() if o["status"] in ("paid", "open"))
    voided = world.create_credit_note(name, finalized[0], 100)
    world.void_credit_note(name, voided["id"])
    return {customers[1], invoices[1], products[1], prices[1], coupons[1]}


def test_changes_on_every_stream_land_exactly_from_one_events_listing(sandbox_factory,
                                                                      tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=300, customers=30,
                                          subscriptions=20, products=6)])
    warehouse = new_warehouse(tmp_path)
    first = run_sync(server, "acme", warehouse)
    assert not first.errors
    before = {spec.name: len(source_objects(server, "acme", spec)) for spec in STREAMS}

    deleted = _change_every_stream(server, "acme")
    time.sleep(SETTLE_SECONDS + 1)  # a sync takes only what is seconds old
    server.reset_stats()
    report = run_sync(server, "acme", warehouse)
    listed = _requests_by_path(server)

    assert not report.errors
    assert compare_with_source(server, "acme", warehouse, deleted=deleted) == []
    for spec in STREAMS:  # every stream really had something new (or gone) to land
        result = report.streams[spec.name]
        now = len(source_objects(server, "acme", spec))
        assert result.inserted + result.updated + result.deleted > 0, spec.name
        assert result.inserted >= now - before[spec.name] >= -result.deleted, spec.name
    # One events listing for all; a created-listing only for the streams that changed.
    assert listed["/v1/events"] == 1
    # The disputed older charge is fetched again, once: its dispute told of the change.
    fetched = [path for path in listed if path.startswith("/v1/charges/")]
    assert len(fetched) == 1 and listed[fetched[0]] == 1
    assert {path for path in listed if path not in ("/v1/account", "/v1/balance",
                                                    "/v1/events", *fetched)} == \
        {spec.endpoint for spec in STREAMS}

    time.sleep(SETTLE_SECONDS + 1)
    server.reset_stats()
    quiet = run_sync(server, "acme", warehouse)
    assert all(result.rows_landed == 0 for result in quiet.streams.values())
    assert server.stats()["total"] <= NO_CHANGE_REQUESTS, _requests_by_path(server)
    assert compare_with_source(server, "acme", warehouse, deleted=deleted) == []


def test_a_stale_cursor_lists_in_full_and_misses_nothing(sandbox_factory, tmp_path):
    """Events older than Stripe keeps cannot be trusted: the streams are listed again."""
    server = sandbox_factory([AccountSpec("acme", charges=150, customers=20)])
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    with warehouse.writer() as conn:  # the last sync, 40 days ago
        for spec in STREAMS:
            state = read_state(conn, "acme", spec.name)
            state.events_cursor -= 40 * 86400
            save_state(conn, state)
    server.world.add_charges("acme", 5)
    server.world.delete_customer("acme", sorted(
        source_objects(server, "acme", STREAMS_BY_NAME["customers"]))[0])
    time.sleep(SETTLE_SECONDS + 1)
    report = run_sync(server, "acme", warehouse)
    assert report.streams["charges"].full_refresh_reason == EVENTS_TOO_OLD
    assert report.streams["charges"].inserted == 5
    assert compare_with_source(server, "acme", warehouse) == []


def test_a_busy_window_is_listed_by_groups_of_event_types(sandbox_factory, tmp_path):
    """More events than a page holds: the streams' types are asked for in groups of at
    most 20 (Stripe's limit), and every change still lands once."""
    server = sandbox_factory([AccountSpec("acme", charges=100, customers=10)])
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    server.world.add_charges("acme", 160)
    customer = sorted(source_objects(server, "acme", STREAMS_BY_NAME["customers"]))[0]
    server.world.update_customer("acme", customer, email="busy@example.com")
    time.sleep(SETTLE_SECONDS + 1)
    server.reset_stats()
    report = run_sync(server, "acme", warehouse)
    assert report.streams["charges"].inserted == 160
    assert report.streams["customers"].updated == 1
    events = _requests_by_path(server)["/v1/events"]
    # the probe, then per group a page or two: never a listing per stream
    groups = event_type_groups([(*spec.event_types, *spec.new_with,
                                 *(type_ for type_, _ in spec.refetch_with))
                                for spec in STREAMS if spec.event_types])
    assert groups is not None and len(groups) < len(STREAMS)
    assert events <= 1 + 2 * len(groups)
    assert compare_with_source(server, "acme", warehouse) == []


def test_the_sandbox_takes_up_to_20_event_types_like_stripe(sandbox_factory):
    import stripe

    server = sandbox_factory([AccountSpec("acme", charges=20)])
    client = stripe.StripeClient(server.world.accounts["acme"].secret_key,
                                 base_addresses={"api": server.base_url})
    types = sorted({t for spec in STREAMS for t in spec.event_types})
    listed = client.raw_request("get", "/v1/events", types=types[:20], limit=100).data
    assert {event["type"] for event in listed["data"]} <= set(types[:20])
    try:
        client.raw_request("get", "/v1/events", types=types[:21])
    except stripe.InvalidRequestError as error:
        assert error.param == "types"
    else:
        raise AssertionError("21 event types were accepted")


def test_a_refund_told_only_by_its_charge_is_listed(sandbox_factory, tmp_path):
    """Accounts on API versions before `refund.created` tell a new refund by the charge's
    `charge.refunded`: seeing one, the refunds stream lists what was created since."""
    server = sandbox_factory([AccountSpec("acme", charges=60, customers=10)])
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    # A refund whose only event is charge.refunded (its object here is the refund itself:
    # the charges stream takes none of it, only the hint remains).
    refund = server.world.create_object("acme", "refunds", "charge.refunded")
    time.sleep(SETTLE_SECONDS + 1)
    report = run_sync(server, "acme", warehouse)
    assert report.streams["refunds"].inserted == 1
    assert refund["id"] in source_objects(server, "acme", STREAMS_BY_NAME["refunds"])
    assert compare_with_source(server, "acme", warehouse) == []


def _saved_states(warehouse) -> dict[str, tuple]:
    with warehouse.reader() as conn:
        return {stream: rest for stream, *rest in conn.execute(
            "SELECT stream, created_cursor, events_cursor, updated_at FROM meta.sync_state "
            "WHERE client_id = 'acme'").fetchall()}


def test_a_client_with_nothing_new_writes_nothing_until_its_cursors_are_old(
        sandbox_factory, tmp_path, monkeypatch):
    """A quiet client's streams with events save no cursor (each commit was a writer
    session, on DuckLake a turn at the catalog); their cursors move on once CURSOR_REFRESH
    old, and what comes after a quiet sync lands exactly. Balance transactions (no events)
    save theirs every sync: it is how far the reconciliation judges the balance."""
    server = sandbox_factory([AccountSpec("acme", charges=60, customers=10)])
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    time.sleep(SETTLE_SECONDS + 1)
    saved = _saved_states(warehouse)

    assert run_sync(server, "acme", warehouse).nothing_new
    quiet = _saved_states(warehouse)
    assert quiet["balance_transactions"][0] > saved["balance_transactions"][0]
    assert {s: v for s, v in quiet.items() if s != "balance_transactions"} == {
        s: v for s, v in saved.items() if s != "balance_transactions"}

    monkeypatch.setattr(engine.sync, "CURSOR_REFRESH", 1)
    assert run_sync(server, "acme", warehouse).nothing_new
    moved = _saved_states(warehouse)
    assert set(moved) == set(saved)
    assert all(moved[s][0] > saved[s][0] and moved[s][2] > saved[s][2] for s in saved)

    monkeypatch.setattr(engine.sync, "CURSOR_REFRESH", 6 * 3600)
    time.sleep(SETTLE_SECONDS + 1)
    assert run_sync(server, "acme", warehouse).nothing_new
    server.world.add_charges("acme", 3)
    time.sleep(SETTLE_SECONDS + 1)
    assert run_sync(server, "acme", warehouse).streams["charges"].inserted == 3
    assert compare_with_source(server, "acme", warehouse) == []
