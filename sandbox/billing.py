"""Customers, subscriptions and their invoices, generated consistently with each other."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sandbox.catalog import Catalog, plan_of
from sandbox.context import DAY, Ctx, add_interval
from sandbox.tables import FilterSpec, Obj, Table, as_text, field_filter
from sandbox.templates import shared_template, template

_FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "John",
    "Radia",
    "Tim",
    "Katherine",
    "Guido",
    "Hedy",
    "Edsger",
    "Sophie",
    "Niklaus",
]
_LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Backus",
    "Perlman",
    "Berners-Lee",
    "Johnson",
    "Rossum",
    "Lamarr",
    "Dijkstra",
    "Wilson",
    "Wirth",
]

STATUSES = ("active", "past_due", "trialing", "canceled", "incomplete")
_STATUS_WEIGHTS = (0.55, 0.08, 0.07, 0.25, 0.05)
# The status filter a subscription list applies when none is given (Stripe hides ended ones).
NOT_ENDED = "__not_ended__"


@dataclass
class SubRow:
    customer: int
    created: int
    status: str
    items: list[tuple[int, int]]  # (price index, quantity)
    period: tuple[int, int] = (0, 0)
    trial: tuple[int, int] | None = None
    canceled_at: int | None = None
    ended_at: int | None = None
    cancel_at_period_end: bool = False
    coupon: int | None = None
    invoices: list[int] = field(default_factory=list)
    first_item: int = 0
    # Canceled by Stripe after the last retry of its latest invoice failed.
    payment_failed: bool = False


@dataclass
class Billing:
    customer_created: np.ndarray
    customer_named: np.ndarray
    delinquent: np.ndarray
    subs: list[SubRow]
    invoices: list[tuple[int, int, int, int, bool]]  # created, sub, period start, end, paid
    item_sub: list[int]


# --- generation ---------------------------------------------------------------------------


def build_billing(ctx: Ctx, catalog: Catalog) -> Billing:
    # Subscriptions need a subscriber, so there is at least one customer when there are any.
    n_customers = max(1 if ctx.spec.subscriptions > 0 else 0, ctx.spec.customers)
    rng = ctx.rng
    span = ctx.end - ctx.start
    created = np.sort(ctx.start + (rng.random(n_customers) * span).astype(np.int64))
    if n_customers:
        created[0] = ctx.start
    named = rng.random(n_customers) < 0.85
    subs = [_subscription(ctx, catalog, created) for _ in range(max(0, ctx.spec.subscriptions))]
    subs.sort(key=lambda s: s.created)
    delinquent = np.zeros(n_customers, dtype=bool)
    item_sub: list[int] = []
    for s_index, sub in enumerate(subs):
        sub.first_item = len(item_sub)
        item_sub.extend([s_index] * len(sub.items))
        if sub.status == "past_due":
            delinquent[sub.customer] = True
    invoices = _invoices(ctx, catalog, subs)
    return Billing(created, named, delinquent, subs, invoices, item_sub)


def _subscription(ctx: Ctx, catalog: Catalog, customer_created: np.ndarray) -> SubRow:
    r = ctx.prng
    status = r.choices(STATUSES, _STATUS_WEIGHTS)[0]
    if not catalog.recurring:
        status = "incomplete"
    # Start dates are spread evenly over the history; the subscriber is someone who was a
    # customer by then (customer 0 exists from the first day).
    if status == "trialing":
        created = ctx.end - r.randrange(0, 13 * DAY)
    elif status == "incomplete":
        created = ctx.end - r.randrange(0, 20 * 3600)
    else:
        created = ctx.start + r.randrange(0, max(1, ctx.end - ctx.start - DAY))
    known = int(np.searchsorted(customer_created, created, side="right"))
    customer = r.randrange(max(1, known))
    price_index = _pick_price(r, catalog)
    items = [(price_index, r.choices((1, 2, 3), (0.7, 0.2, 0.1))[0])]
    partners = [
        p for p in catalog.recurring if p != price_index and _same_cycle(catalog, p, price_index)
    ]
    if partners and r.random() < 0.15:
        items.append((r.choice(partners), 1))
    wide = ctx.spec.items_per_subscription
    if wide:  # the same few prices again: the sandbox does not check for repeats
        same = partners or [price_index]
        items += [(same[k % len(same)], 1) for k in range(wide - len(items))]
    sub = SubRow(customer=customer, created=created, status=status, items=items)
    if r.random() < 0.15:
        sub.coupon = r.randrange(len(catalog.coupons))
    interval, count = _cycle(catalog, price_index)
    if status == "trialing":
        sub.trial = (sub.created, sub.created + 14 * DAY)
        sub.period = sub.trial
    elif status == "incomplete":
        sub.period = (sub.created, add_interval(sub.created, interval, count))
    elif status == "canceled":
        first_end = add_interval(sub.created, interval, count)
        low = min(first_end, ctx.end - 60)
        sub.ended_at = low + r.randrange(0, max(1, ctx.end - low))
        sub.canceled_at = sub.ended_at
        sub.period = _period_containing(sub.created, interval, count, sub.ended_at)
    else:
        sub.period = _period_containing(sub.created, interval, count, ctx.now)
        if status == "active" and r.random() < 0.12:
            sub.cancel_at_period_end = True
            sub.canceled_at = (
                r.randrange(sub.period[0], ctx.end) if sub.period[0] < ctx.end else ctx.end
            )
    return sub


# Monthly plans dominate real SaaS books; the other cadences are there but rarer.
_CADENCE_WEIGHT = {("month", 1): 4.0, ("year", 1): 1.5, ("month", 3): 1.0, ("week", 1): 1.0}


def _pick_price(r, catalog: Catalog) -> int:
    if not catalog.recurring:
        return 0
    weights = [_CADENCE_WEIGHT.get(_cycle(catalog, p), 0.5) for p in catalog.recurring]
    return r.choices(catalog.recurring, weights)[0]


def _cycle(catalog: Catalog, price_index: int) -> tuple[str, int]:
    recurring = catalog.prices[price_index]["recurring"]
    return recurring["interval"], recurring["interval_count"]


def _same_cycle(catalog: Catalog, a: int, b: int) -> bool:
    return _cycle(catalog, a) == _cycle(catalog, b)


def _period_containing(anchor: int, interval: str, count: int, moment: int) -> tuple[int, int]:
    start = anchor
    end = add_interval(start, interval, count)
    while end <= moment:
        start, end = end, add_interval(end, interval, count)
    return start, end


def _invoices(
    ctx: Ctx, catalog: Catalog, subs: list[SubRow]
) -> list[tuple[int, int, int, int, bool]]:
    rows: list[tuple[int, int, int, int, bool]] = []
    for s_index, sub in enumerate(subs):
        if sub.status == "trialing":
            continue
        interval, count = _cycle(catalog, sub.items[0][0])
        start = sub.created
        last = sub.ended_at if sub.ended_at is not None else ctx.end
        while start <= last:
            end = add_interval(start, interval, count)
            rows.append((start, s_index, start, end, True))
            start = end
        # Every fourth canceled subscription was canceled because its payment failed.
        sub.payment_failed = sub.status == "canceled" and s_index % 4 == 1
        if sub.status in ("past_due", "incomplete") or sub.payment_failed:
            created, s, p0, p1, _ = rows[-1]
            rows[-1] = (created, s, p0, p1, False)
    rows.sort(key=lambda row: (row[0], row[1]))
    for i_index, row in enumerate(rows):
        subs[row[1]].invoices.append(i_index)
    return rows


# --- rendering ------------------------------------------------------------------------------


class BillingViews:
    """Renders customers, subscriptions, subscription items and invoices from their rows."""

    def __init__(self, ctx: Ctx, catalog: Catalog, billing: Billing) -> None:
        self.ctx = ctx
        self.catalog = catalog
        self.b = billing
        self.cus = ctx.codec("cus_")
        self.sub = ctx.codec("sub_")
        self.si = ctx.codec("si_")
        self.inv = ctx.codec("in_")
        self.il = ctx.codec("il_")
        self.di = ctx.codec("di_")
        self._customer_t = shared_template("customer")
        self._sub_t = shared_template("subscription")
        self._item_t = shared_template("subscription_item")
        self._invoice_t = shared_template("invoice")
        self._line_t = shared_template("invoice")["lines"]["data"][0]
        self._plans = {i: plan_of(p) for i, p in enumerate(catalog.prices) if p["recurring"]}
        self._canceled_details = {
            "comment": None,
            "feedback": None,
            "reason": "cancellation_requested",
        }
        self._payment_failed_details = {**self._canceled_details, "reason": "payment_failed"}

    # customers
    def customer_name(self, index: int) -> str | None:
        if not self.b.customer_named[index]:
            return None
        return f"{_FIRST[index % len(_FIRST)]} {_LAST[(index * 7 + 3) % len(_LAST)]}"

    def customer_email(self, index: int) -> str | None:
        name = self.customer_name(index)
        if name is None:
            return None
        return f"{name.split()[0].lower()}.{index}@example.com"

    def customer(self, index: int) -> Obj:
        obj = dict(self._customer_t)
        obj.update(
            id=self.cus.make(index),
            created=int(self.b.customer_created[index]),
            email=self.customer_email(index),
            name=self.customer_name(index),
            description=None,
            delinquent=bool(self.b.delinquent[index]),
            currency=self.ctx.currency,
            livemode=self.ctx.livemode,
            invoice_prefix=self.cus.make(index)[-8:].upper(),
            next_invoice_sequence=1,
        )
        return obj

    # subscriptions
    def discount(self, s_index: int) -> Obj | None:
        sub = self.b.subs[s_index]
        if sub.coupon is None:
            return None
        obj = template("discount")
        coupon = self.catalog.coupons[sub.coupon]
        obj.update(
            id=self.di.make(s_index),
            customer=self.cus.make(sub.customer),
            subscription=self.sub.make(s_index),
            start=sub.created,
            source={"coupon": coupon, "type": "coupon"},
            coupon=coupon,
        )
        return obj

    def item(self, s_index: int, position: int) -> Obj:
        sub = self.b.subs[s_index]
        price_index, quantity = sub.items[position]
        obj = dict(self._item_t)
        obj.update(
            id=self.si.make(sub.first_item + position),
            created=sub.created,
            price=self.catalog.prices[price_index],
            plan=self._plans[price_index],
            quantity=quantity,
            subscription=self.sub.make(s_index),
            current_period_start=sub.period[0],
            current_period_end=sub.period[1],
            discounts=[],
            metadata={},
        )
        return obj

    def subscription(self, s_index: int) -> Obj:
        sub = self.b.subs[s_index]
        sub_id = self.sub.make(s_index)
        obj = dict(self._sub_t)
        discount = self.discount(s_index)
        items = [self.item(s_index, k) for k in range(len(sub.items))]
        canceled = sub.status == "canceled"
        obj.update(
            id=sub_id,
            created=sub.created,
            start_date=sub.created,
            billing_cycle_anchor=sub.trial[1] if sub.trial else sub.created,
            customer=self.cus.make(sub.customer),
            currency=self.ctx.currency,
            livemode=self.ctx.livemode,
            status=sub.status,
            trial_start=sub.trial[0] if sub.trial else None,
            trial_end=sub.trial[1] if sub.trial else None,
            cancel_at_period_end=sub.cancel_at_period_end,
            cancel_at=sub.period[1] if sub.cancel_at_period_end else None,
            canceled_at=sub.canceled_at,
            ended_at=sub.ended_at,
            cancellation_details=self._payment_failed_details
            if sub.payment_failed
            else self._canceled_details
            if canceled or sub.cancel_at_period_end
            else self._sub_t["cancellation_details"],
            discounts=[discount] if discount else [],
            items={
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
            latest_invoice=self.inv.make(sub.invoices[-1]) if sub.invoices else None,
            metadata={},
        )
        return obj

    # invoices
    def _amounts(self, s_index: int) -> tuple[list[int], int]:
        sub = self.b.subs[s_index]
        lines = [self.catalog.prices[p]["unit_amount"] * q for p, q in sub.items]
        subtotal = sum(lines)
        discount = 0
        if sub.coupon is not None:
            coupon = self.catalog.coupons[sub.coupon]
            if coupon["percent_off"]:
                discount = int(round(subtotal * coupon["percent_off"] / 100))
            else:
                discount = min(subtotal, coupon["amount_off"])
        return lines, discount

    def invoice(self, i_index: int) -> Obj:
        created, s_index, p0, p1, paid = self.b.invoices[i_index]
        sub = self.b.subs[s_index]
        sub_id = self.sub.make(s_index)
        inv_id = self.inv.make(i_index)
        lines, discount = self._amounts(s_index)
        subtotal = sum(lines)
        total = subtotal - discount
        first = sub.invoices and sub.invoices[0] == i_index
        # Some renewals fail at the first attempt and are paid by the retry 3 days later.
        recovered = paid and not first and i_index % 7 == 3
        paid_at = created + (3 * DAY if recovered else 60)
        obj = dict(self._invoice_t)
        obj.update(
            id=inv_id,
            created=created,
            effective_at=created,
            account_country="JP" if self.ctx.currency == "jpy" else "US",
            account_name=self.ctx.spec.name.capitalize(),
            customer=self.cus.make(sub.customer),
            customer_email=self.customer_email(sub.customer),
            customer_name=self.customer_name(sub.customer),
            currency=self.ctx.currency,
            livemode=self.ctx.livemode,
            subscription=sub_id,
            parent={
                "quote_details": None,
                "subscription_details": {"metadata": {}, "subscription": sub_id},
                "type": "subscription_details",
            },
            billing_reason="subscription_create" if first else "subscription_cycle",
            period_start=p0,
            period_end=p1,
            subtotal=subtotal,
            subtotal_excluding_tax=subtotal,
            total=total,
            total_excluding_tax=total,
            amount_due=total,
            amount_paid=total if paid else 0,
            amount_remaining=0 if paid else total,
            attempted=True,
            attempt_count=2 if recovered else 1 if paid else 4 if sub.payment_failed else 2,
            status="paid" if paid else "open",
            status_transitions={
                "finalized_at": created,
                "marked_uncollectible_at": None,
                "paid_at": paid_at if paid else None,
                "voided_at": None,
            },
            discounts=[self.di.make(s_index)] if discount else [],
            total_discount_amounts=[{"amount": discount, "discount": self.di.make(s_index)}]
            if discount
            else [],
            number=f"{self.cus.make(sub.customer)[-8:].upper()}-{i_index + 1:04d}",
            hosted_invoice_url=None,
            invoice_pdf=None,
            webhooks_delivered_at=created,
            due_date=None,
            lines=self._lines(i_index, inv_id, sub_id, s_index, lines, discount, p0, p1),
        )
        return obj

    def _lines(
        self,
        i_index: int,
        inv_id: str,
        sub_id: str,
        s_index: int,
        amounts: list[int],
        discount: int,
        p0: int,
        p1: int,
    ) -> Obj:
        sub = self.b.subs[s_index]
        data = []
        subtotal = sum(amounts) or 1
        for k, ((price_index, quantity), amount) in enumerate(zip(sub.items, amounts, strict=True)):
            price = self.catalog.prices[price_index]
            product = self.catalog.products[_product_index(self.catalog, price["product"])]
            share = int(round(discount * amount / subtotal))
            line = dict(self._line_t)
            line.update(
                id=self.il.make(i_index * max(4, self.ctx.spec.items_per_subscription or 0) + k),
                invoice=inv_id,
                amount=amount,
                subtotal=amount,
                currency=self.ctx.currency,
                description=f"{quantity} × {product['name']} (at {price['unit_amount']} / "
                f"{price['recurring']['interval']})",
                livemode=self.ctx.livemode,
                period={"end": p1, "start": p0},
                quantity=quantity,
                quantity_decimal=str(quantity),
                subscription=sub_id,
                discount_amounts=[{"amount": share, "discount": self.di.make(s_index)}]
                if share
                else [],
                discounts=[],
                taxes=[],
                pretax_credit_amounts=[],
                parent={
                    "invoice_item_details": None,
                    "subscription_item_details": {
                        "invoice_item": None,
                        "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": sub_id,
                        "subscription_item": self.si.make(sub.first_item + k),
                    },
                    "type": "subscription_item_details",
                },
                pricing={
                    "price_details": {"price": price["id"], "product": price["product"]},
                    "type": "price_details",
                    "unit_amount_decimal": price["unit_amount_decimal"],
                },
                metadata={},
            )
            data.append(line)
        return {
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": len(data),
            "url": f"/v1/invoices/{inv_id}/lines",
        }


def _product_index(catalog: Catalog, product_id: str) -> int:
    for i, product in enumerate(catalog.products):
        if product["id"] == product_id:
            return i
    return 0


def billing_tables(ctx: Ctx, views: BillingViews) -> dict[str, Table]:
    b = views.b
    cus_codec = views.cus
    sub_customer = np.array([s.customer for s in b.subs], dtype=np.int64)
    sub_status = np.array([s.status for s in b.subs] or [""], dtype=object)[: len(b.subs)]
    inv_sub = np.array([row[1] for row in b.invoices], dtype=np.int64)
    inv_paid = np.array([row[4] for row in b.invoices], dtype=bool)

    def index_mask(codec, column: np.ndarray):
        def mask(value: str) -> np.ndarray:
            index = codec.index_of(value)
            return column == (-1 if index is None else index)

        return mask

    def status_filter(value: str) -> np.ndarray:
        if value == "all":
            return np.ones(len(b.subs), dtype=bool)
        if value == NOT_ENDED:
            return (sub_status != "canceled") & (sub_status != "incomplete_expired")
        return sub_status == value

    def status_matches(obj: Obj, value: str) -> bool:
        status = as_text(obj.get("status"))
        if value == NOT_ENDED:
            return status not in ("canceled", "incomplete_expired")
        return value in ("all", status)

    inv_customer = sub_customer[inv_sub] if len(inv_sub) else np.zeros(0, dtype=np.int64)
    return {
        "customers": Table(
            "customers",
            "customer",
            cus_codec,
            b.customer_created,
            views.customer,
            {"email": field_filter("email")},
        ),
        "subscriptions": Table(
            "subscriptions",
            "subscription",
            views.sub,
            np.array([s.created for s in b.subs], dtype=np.int64),
            views.subscription,
            {
                "status": FilterSpec(status_matches, status_filter),
                "customer": field_filter("customer", index_mask(cus_codec, sub_customer)),
            },
        ),
        "invoices": Table(
            "invoices",
            "invoice",
            views.inv,
            np.array([row[0] for row in b.invoices], dtype=np.int64),
            views.invoice,
            {
                "customer": field_filter("customer", index_mask(cus_codec, inv_customer)),
                "subscription": field_filter("subscription", index_mask(views.sub, inv_sub)),
                "status": field_filter(
                    "status",
                    lambda v: (
                        inv_paid
                        if v == "paid"
                        else (~inv_paid if v == "open" else inv_paid & False)
                    ),
                ),
            },
        ),
    }
