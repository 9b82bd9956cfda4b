"""Independent check: the sync against localstripe, an implementation of Stripe we did not write.

Objects are made with the official SDK, synced into a real DuckDB file through the
pipeline's own `sync_client`, and every row is compared with what the SDK reads
straight from localstripe: the same ids (none missing, none extra, none twice), the
typed columns, and `raw` equal to localstripe's retrieve. localstripe sits behind
tests/localstripe_harness.py, which gives its lists Stripe's order and filters; its
module docstring lists what localstripe cannot model. Those parts (charge and refund
events, price objects, disputes, credit notes, coupon events, lists past the embedded
items) are covered by the sandbox tests, not weakened here. Coupons, PaymentIntents and
invoice lines, which localstripe has, are compared here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import stripe

from engine.streams import STREAMS, ChildSpec, Column, StreamSpec
from engine.stripe_api import StripeAccount
from engine.sync import SETTLE_SECONDS, SyncReport, sync_client
from engine.warehouse import Warehouse
from engine.warehouse_factory import open_warehouse
from tests.localstripe_harness import (
    LOCALSTRIPE_ACCOUNT_ID,
    LOCALSTRIPE_KEY,
    LocalStripeServer,
    StripeListProxy,
    localstripe_stack,
)
from tests.sync_helpers import as_kept

pytestmark = pytest.mark.timeout(120)

CLIENT = "localstripe_client"
VISA = "4242424242424242"
DECLINED_ON_CHARGE = "4000000000000341"  # attaches, then every charge fails


@dataclass
class Stripes:
    server: LocalStripeServer
    proxy: StripeListProxy
    sdk: stripe.StripeClient  # through the proxy, as the pipeline sees Stripe
    direct: stripe.StripeClient  # straight to localstripe: the truth we compare with


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LocalStripeServer, StripeListProxy]]:
    with localstripe_stack() as started:
        yield started


@pytest.fixture
def stripes(stack: tuple[LocalStripeServer, StripeListProxy]) -> Stripes:
    server, proxy = stack
    server.flush()  # each test starts from an empty localstripe
    return Stripes(
        server, proxy,
        sdk=stripe.StripeClient(LOCALSTRIPE_KEY, base_addresses={"api": proxy.base_url}),
        direct=stripe.StripeClient(LOCALSTRIPE_KEY, base_addresses={"api": server.url}),
    )


@pytest.fixture
def warehouse(home: Path) -> Warehouse:
    return open_warehouse(home / "warehouse.duckdb")


# --- making objects -----------------------------------------------------------------------


def card_customer(sdk: stripe.StripeClient, n: int, number: str = VISA) -> str:
    token = sdk.v1.tokens.create(params={"card": {
        "number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
    customer = sdk.v1.customers.create(params={
        "email": f"card{n}@example.com", "name": f"Card Customer {n}", "source": token.id})
    return customer.id


def plain_customer(sdk: stripe.StripeClient, n: int) -> str:
    return sdk.v1.customers.create(params={"email": f"plain{n}@example.com"}).id


def charge(sdk: stripe.StripeClient, customer: str, amount: int) -> str:
    return sdk.v1.charges.create(params={
        "amount": amount, "currency": "eur", "customer": customer,
        "description": f"Order of {amount}"}).id


def plans(sdk: stripe.StripeClient) -> list[str]:
    made = []
    for name, amount, interval in (("Pro", 1500, "month"), ("Team", 12000, "year")):
        product = sdk.v1.products.create(params={"name": name, "description": f"{name} plan"})
        made.append(sdk.v1.plans.create(params={
            "product": product.id, "amount": amount, "currency": "eur",
            "interval": interval, "nickname": f"{name} {interval}ly"}).id)
    return made


def subscribe(sdk: stripe.StripeClient, customer: str, plan: str) -> str:
    return sdk.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": plan}]}).id


def wait_until_listable() -> None:
    """Wait until everything made so far is older than the SETTLE_SECONDS a sync leaves out."""
    made_by = int(time.time())
    while int(time.time()) - SETTLE_SECONDS <= made_by:
        time.sleep(0.05)


# --- syncing and reading back ---------------------------------------------------------------


def sync(stripes: Stripes, warehouse: Warehouse, chunk_rows: int = 20_000,
         full_refresh: bool = False) -> SyncReport:
    account = StripeAccount(CLIENT, LOCALSTRIPE_KEY, api_base=stripes.proxy.base_url,
                            requests_per_second=1000)
    # localstripe emits no events for charges and refunds (above): every stream lists what
    # was created since its cursor, as the engine does for a stream that had events.
    report = sync_client(account, warehouse, STREAMS, chunk_rows=chunk_rows,
                         full_refresh=full_refresh, list_created=True)
    assert report.errors == []
    assert report.account_id == LOCALSTRIPE_ACCOUNT_ID
    return report


def table_rows(warehouse: Warehouse, table: str) -> list[dict[str, Any]]:
    with warehouse.reader() as conn:
        result = conn.execute(
            f"SELECT * FROM stripe.{table} WHERE client_id = ? ORDER BY id", [CLIENT])
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def source_objects(direct: stripe.StripeClient, spec: StreamSpec) -> dict[str, dict]:
    """Every object of the stream as localstripe lists it, retrieved one by one."""
    service = getattr(direct.v1, spec.name)
    try:
        listed = service.list(params={**spec.list_params, "limit": 100})
    except stripe.StripeError as error:
        if error.http_status == 404:  # localstripe has no such endpoint (prices)
            return {}
        raise
    ids = [obj.id for obj in listed.auto_paging_iter()]
    assert len(ids) == len(set(ids)), f"localstripe listed {spec.name} twice"
    return {i: direct.raw_request("get", f"{spec.endpoint}/{i}").data for i in ids}


def source_state(direct: stripe.StripeClient) -> dict[str, dict[str, dict]]:
    return {spec.name: source_objects(direct, spec) for spec in STREAMS}


def expected_value(column: Column, obj: dict) -> Any:
    """What a typed column must hold for `obj`: an oracle written apart from assets/normalize."""
    value: Any = obj
    for key in column.source_path:
        value = value.get(key) if isinstance(value, dict) else None
    if column.ref and isinstance(value, dict):
        value = value.get("id")
    if value is None:
        return None
    if column.type == "TIMESTAMPTZ":
        return datetime.fromtimestamp(value, UTC)
    return value


def row_value(column: Column, row: dict) -> Any:
    value = row[column.name]
    return json.loads(value) if column.type == "JSON" and value is not None else value


# Fields a charge never changes: what the round trip checks on a charge localstripe changed
# without an event (see the refund below).
IMMUTABLE = ("id", "created", "amount", "currency", "customer")


def mismatches(
    rows: list[dict], columns: tuple[Column, ...], expected: dict[str, dict],
    deleted: frozenset[str] = frozenset(), loose: frozenset[str] = frozenset(),
    parents: dict[str, str] | None = None, parent_column: str = "",
    as_raw: Callable[[dict], dict] = lambda obj: obj,
) -> list[str]:
    """Every way the rows differ from the expected objects, as readable lines. `as_raw`: the
    object as its row's `raw` keeps it (lists kept apart in child tables are emptied)."""
    found: list[str] = []
    ids = [row["id"] for row in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        found.append(f"duplicated: {duplicates}")
    if missing := sorted(set(expected) - set(ids)):
        found.append(f"missing: {missing}")
    if extra := sorted(set(ids) - set(expected)):
        found.append(f"extra: {extra}")
    for row in rows:
        obj = expected.get(row["id"])
        if obj is None:
            continue
        if row["is_deleted"] is not (row["id"] in deleted):
            found.append(f"{row['id']}: is_deleted = {row['is_deleted']}")
        if parents is not None and row[parent_column] != parents[row["id"]]:
            found.append(f"{row['id']}: {parent_column} = {row[parent_column]}")
        checked = [c for c in columns if row["id"] not in loose or c.name in IMMUTABLE]
        for column in checked:
            if row_value(column, row) != expected_value(column, obj):
                found.append(f"{row['id']}.{column.name}: {row_value(column, row)!r} != "
                             f"{expected_value(column, obj)!r}")
        if row["id"] not in loose and json.loads(row["raw"]) != as_raw(obj):
            found.append(f"{row['id']}: raw differs from localstripe's retrieve")
    return found


def items_of(parents: dict[str, dict], path: tuple[str, ...] = ("items", "data")
             ) -> tuple[dict[str, dict], dict[str, str]]:
    """The items of each parent's list at `path` (subscription items, invoice lines)."""
    items: dict[str, dict] = {}
    parent_of: dict[str, str] = {}
    for parent in parents.values():
        listed: Any = parent
        for key in path:
            listed = listed.get(key) if isinstance(listed, dict) else None
        for item in listed or []:
            items[item["id"]] = item
            parent_of[item["id"]] = parent["id"]
    return items, parent_of


def assert_warehouse_matches(
    warehouse: Warehouse, source: dict[str, dict[str, dict]],
    deleted: dict[str, dict[str, dict]] | None = None,
    loose: dict[str, frozenset[str]] | None = None,
) -> None:
    """Each stream's table holds exactly the source's objects (plus deleted ones, flagged)."""
    deleted, loose = deleted or {}, loose or {}
    problems: dict[str, list[str]] = {}
    for spec in STREAMS:
        gone = deleted.get(spec.name, {})
        expected = {**source[spec.name], **gone}
        found = mismatches(table_rows(warehouse, spec.table), spec.columns, expected,
                           deleted=frozenset(gone), loose=loose.get(spec.name, frozenset()),
                           as_raw=partial(as_kept, spec))
        for child in spec.children:
            found += child_mismatches(warehouse, child, source[spec.name])
        if found:
            problems[spec.name] = found
    assert problems == {}


def child_mismatches(warehouse: Warehouse, child: ChildSpec, parents: dict[str, dict]
                     ) -> list[str]:
    items, parent_of = items_of(parents, child.path)
    return [f"{child.table} {line}" for line in mismatches(
        table_rows(warehouse, child.table), child.columns, items,
        parents=parent_of, parent_column=child.parent_column)]


def dump(warehouse: Warehouse) -> dict[str, list[dict]]:
    tables = [spec.table for spec in STREAMS] + [c.table for s in STREAMS for c in s.children]
    return {table: table_rows(warehouse, table) for table in tables}


# --- the proxy itself -------------------------------------------------------------------------


def test_proxy_gives_localstripe_stripes_list_order_filters_and_paging(stripes: Stripes) -> None:
    # The harness is test code too: check it speaks Stripe before trusting what goes through it.
    made = [plain_customer(stripes.sdk, n) for n in range(5)]
    first = stripes.sdk.v1.customers.list(params={"limit": 2})
    assert [c.id for c in first.data] == made[::-1][:2] and first.has_more
    every = [c.id for c in first.auto_paging_iter()]
    assert every == made[::-1]
    before = stripes.sdk.v1.customers.list(params={"limit": 2, "ending_before": made[1]})
    assert [c.id for c in before.data] == [made[3], made[2]] and before.has_more

    created = stripes.direct.v1.customers.retrieve(made[0]).created
    assert stripes.sdk.v1.customers.list(params={"created": {"lt": created}}).data == []
    in_window = stripes.sdk.v1.customers.list(
        params={"created": {"gte": created, "lt": int(time.time()) + 1}, "limit": 100})
    assert {c.id for c in in_window.data} >= set(made)

    stripes.sdk.v1.customers.update(made[2], params={"name": "Renamed"})
    events = stripes.sdk.v1.events.list(
        params={"types": ["customer.updated", "customer.created"], "limit": 100}).data
    assert [e.type for e in events] == ["customer.updated"] + ["customer.created"] * 5
    assert events[0].data.object.id == made[2]

    assert stripes.sdk.v1.prices.list().data == []  # localstripe has no prices
    with pytest.raises(stripe.InvalidRequestError):
        stripes.sdk.v1.customers.list(params={"limit": 101})
    balance = stripes.sdk.v1.balance.retrieve()
    assert [b.currency for b in balance.available] == ["eur"]


# --- the round trip ---------------------------------------------------------------------------


def test_round_trip_with_changes_matches_localstripe_exactly(
    stripes: Stripes, warehouse: Warehouse
) -> None:
    sdk = stripes.sdk
    monthly, yearly = plans(sdk)
    # More than one page (100) of customers, charges and balance transactions, so paging
    # and the pipeline's time slicing both run.
    cards = [card_customer(sdk, n) for n in range(12)]
    plain = [plain_customer(sdk, n) for n in range(95)]
    charges = [charge(sdk, cards[n % 12], 500 + 37 * n) for n in range(105)]
    declining = card_customer(sdk, 99, DECLINED_ON_CHARGE)
    with pytest.raises(stripe.CardError):
        charge(sdk, declining, 4_200)  # stays in localstripe as a failed charge
    sdk.v1.refunds.create(params={"charge": charges[0]})
    sdk.v1.refunds.create(params={"charge": charges[1], "amount": 100})
    subs = [subscribe(sdk, cards[n], monthly if n % 2 else yearly) for n in range(4)]
    # Coupons (localstripe's ids are the caller's, as Stripe allows).
    coupons = [sdk.v1.coupons.create(params=params).id for params in (
        {"id": "SPRING15", "percent_off": 15.5, "duration": "forever"},
        {"id": "FIVE_OFF", "amount_off": 500, "currency": "eur", "duration": "repeating",
         "duration_in_months": 3})]
    payouts = [sdk.v1.payouts.create(params={"amount": a, "currency": "eur"}).id
               for a in (5_000, 7_500)]
    wait_until_listable()

    # Small chunks: the cursor moves with several commits inside one stream's listing.
    first = sync(stripes, warehouse, chunk_rows=40)
    before = source_state(stripes.direct)
    assert {name: len(objects) for name, objects in before.items()} == {
        "charges": 106 + 4,  # 105 + the failed one + one per subscription's first invoice
        "refunds": 2, "customers": 108, "subscriptions": 4, "invoices": 4,
        "balance_transactions": 105 + 4 + 2, "payouts": 2, "products": 2, "prices": 0,
        # Each subscription's first invoice is paid through a PaymentIntent; localstripe
        # has no disputes and no credit notes (the proxy answers empty lists).
        "payment_intents": 4, "coupons": 2, "disputes": 0, "credit_notes": 0,
    }
    assert len(items_of(before["subscriptions"])[0]) == 4
    assert len(items_of(before["invoices"], ("lines", "data"))[0]) == 4
    assert_warehouse_matches(warehouse, before)
    assert {name: r.inserted for name, r in first.streams.items()} == {
        name: len(objects) for name, objects in before.items()}
    assert first.balance_rows == 1
    available = stripes.direct.raw_request("get", "/v1/balance").data["available"]["amount"]
    assert [(r["currency"], r["available"]) for r in table_rows(warehouse, "balance")] == [
        ("eur", available)]

    # Changes between syncs, each announced by localstripe with an event...
    sdk.v1.subscriptions.cancel(subs[0])
    # localstripe embeds a customer's live subscriptions in the customer and emits no
    # customer.updated when one ends; updating the customer afterwards keeps its newest
    # event equal to its retrieve.
    sdk.v1.customers.update(cards[0], params={"name": "Renamed after cancelling"})
    sdk.v1.customers.update(plain[7], params={"email": "changed@example.com"})
    gone = stripes.direct.raw_request("get", f"/v1/customers/{cards[5]}").data
    sdk.v1.customers.delete(cards[5])
    sdk.v1.payouts.cancel(payouts[0])
    # ...a refund, which localstripe lists but announces with no charge event...
    refunded = charges[20]
    sdk.v1.refunds.create(params={"charge": refunded})
    # ...and new objects, which the created cursor picks up.
    newcomer = card_customer(sdk, 200)
    charge(sdk, newcomer, 9_900)
    # A subscription: its invoice, charge and PaymentIntent (payment_intent.succeeded).
    subscribe(sdk, newcomer, monthly)
    wait_until_listable()

    second = sync(stripes, warehouse, chunk_rows=40)
    after = source_state(stripes.direct)
    assert after["subscriptions"][subs[0]]["status"] == "canceled"
    assert after["payouts"][payouts[0]]["status"] == "canceled"
    assert cards[5] not in after["customers"]
    # localstripe changed the refunded charge (amount_refunded) but emitted no
    # charge.refunded, so events cannot carry it: only its fixed fields are compared here,
    # and the refund itself must land. The sandbox tests cover charge.refunded.
    assert after["charges"][refunded]["amount_refunded"] > 0
    assert_warehouse_matches(
        warehouse, after,
        deleted={"customers": {cards[5]: gone}},
        loose={"charges": frozenset({refunded})},
    )
    assert {r["id"] for r in table_rows(warehouse, "refunds") if r["charge"] == refunded}
    streams = second.streams
    assert (streams["customers"].inserted, streams["customers"].deleted) == (1, 1)
    assert streams["customers"].updated >= 3  # cards[0], plain[7] and the deleted one
    # The canceled one, and the new one: landed from its event, then listed again.
    assert (streams["subscriptions"].inserted, streams["subscriptions"].updated) == (1, 2)
    assert streams["payouts"].updated == 1
    assert (streams["refunds"].inserted, streams["charges"].inserted) == (1, 2)
    # The new PaymentIntent came with payment_intent.succeeded, then was listed again.
    assert (streams["payment_intents"].events_applied,
            streams["payment_intents"].inserted) == (1, 1)
    assert len(table_rows(warehouse, "invoice_line_items")) == 5

    # A third sync with nothing changed writes nothing and leaves every row as it was.
    tables = dump(warehouse)
    third = sync(stripes, warehouse)
    assert {n: (r.inserted, r.updated, r.deleted) for n, r in third.streams.items()} == {
        n: (0, 0, 0) for n in third.streams}
    assert dump(warehouse) == tables

    # A full refresh (what a sync older than Stripe's 30 days of events falls back to)
    # lists everything again: now the refunded charge matches too, the deleted customer
    # keeps its flagged row, and still nothing is duplicated.
    # localstripe announces no coupon changes: a coupon deleted there is flagged by the
    # full listing, which does not see it again (a deletable stream).
    gone_coupon = stripes.direct.raw_request("get", f"/v1/coupons/{coupons[1]}").data
    sdk.v1.coupons.delete(coupons[1])
    after = source_state(stripes.direct)
    refreshed = sync(stripes, warehouse, full_refresh=True)
    assert refreshed.streams["coupons"].deleted == 1
    assert_warehouse_matches(warehouse, after, deleted={"customers": {cards[5]: gone},
                                                       "coupons": {coupons[1]: gone_coupon}})


def test_second_sync_with_nothing_changed_lands_nothing(
    stripes: Stripes, warehouse: Warehouse
) -> None:
    sdk = stripes.sdk
    monthly, _ = plans(sdk)
    customers = [card_customer(sdk, n) for n in range(3)]
    for n, customer in enumerate(customers):
        charge(sdk, customer, 1_000 + n)
    subscribe(sdk, customers[0], monthly)
    wait_until_listable()

    first = sync(stripes, warehouse)
    assert first.streams["charges"].inserted == 4
    tables = dump(warehouse)

    second = sync(stripes, warehouse)
    assert {n: (r.inserted, r.updated, r.deleted) for n, r in second.streams.items()} == {
        n: (0, 0, 0) for n in second.streams}
    assert dump(warehouse) == tables
    # Constant cost: one events page for every stream, one empty listing each (all listed:
    # list_created), the key check and the balance.
    assert {n: r.requests for n, r in second.streams.items()} == {
        n: 1 for n in second.streams}
    assert second.requests == 3 + len(second.streams)
