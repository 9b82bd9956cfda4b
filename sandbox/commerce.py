"""Payment intents, disputes, coupons and credit notes, and the lists a parent embeds only
in part (subscription items, invoice lines) with the endpoints that page the rest.

Payment intents mirror the charges one to one (charge i was paid through pi i), so they
cost nothing to generate; disputes and credit notes start empty and are made by the
changes in sandbox/world_commerce.py, with their balance transactions and events.
"""

from __future__ import annotations

import numpy as np

from sandbox.context import Ctx
from sandbox.errors import resource_missing
from sandbox.listing import parse_limit
from sandbox.params import Params
from sandbox.payments import PaymentViews
from sandbox.tables import Obj, Table, field_filter
from sandbox.templates import shared_template

# Stripe embeds the first 10 items of a subscription and of an invoice's lines.
EMBEDDED = 10


def payment_intent_obj(charge: Obj) -> Obj:
    """The PaymentIntent a charge was made through (Stripe's own shape, every field)."""
    obj = dict(shared_template("payment_intent"))
    succeeded = charge["status"] == "succeeded"
    pi_id = charge["payment_intent"]
    obj.update(
        id=pi_id,
        created=charge["created"],
        amount=charge["amount"],
        amount_received=charge["amount"] if succeeded else 0,
        amount_capturable=0,
        currency=charge["currency"],
        customer=charge["customer"],
        description=charge["description"],
        latest_charge=charge["id"],
        payment_method=charge["payment_method"],
        livemode=charge["livemode"],
        status="succeeded" if succeeded else "requires_payment_method",
        last_payment_error=None if succeeded else {
            "type": "card_error", "code": charge["failure_code"],
            "message": charge["failure_message"], "charge": charge["id"]},
        client_secret=f"{pi_id}_secret_sandbox",
        canceled_at=None,
        next_action=None,
        processing=None,
        shipping=None,
        transfer_data=None,
        payment_method_configuration_details=None,
        metadata={},
    )
    return obj


def _empty(ctx: Ctx, path: str, object_name: str, prefix: str,
           filters: tuple[str, ...]) -> Table:
    def never(index: int) -> Obj:  # no generated rows
        raise IndexError(index)

    return Table(path, object_name, ctx.codec(prefix), np.zeros(0, dtype=np.int64), never,
                 {name: field_filter(name) for name in filters})


def commerce_tables(ctx: Ctx, views: PaymentViews, charges: Table,
                    coupons: list[Obj]) -> dict[str, Table]:
    p = views.p

    def customer_mask(value: str) -> np.ndarray:
        index = views.cus.index_of(value)
        return p.ch_customer == (-1 if index is None else index)

    return {
        "payment_intents": Table(
            "payment_intents", "payment_intent", views.pi, p.ch_created,
            lambda i: payment_intent_obj(charges.base(i)),
            {"customer": field_filter("customer", customer_mask)},
        ),
        "coupons": Table(
            "coupons", "coupon", ctx.codec("co_"),
            np.array([c["created"] for c in coupons], dtype=np.int64), coupons.__getitem__,
        ),
        "disputes": _empty(ctx, "disputes", "dispute", "dp_", ("charge", "payment_intent")),
        "credit_notes": _empty(ctx, "credit_notes", "credit_note", "cn_",
                               ("customer", "invoice")),
    }


def embed(items: list[Obj], url: str) -> Obj:
    """The list a parent embeds: its first EMBEDDED items, `has_more` if there are others."""
    return {"object": "list", "data": items[:EMBEDDED], "has_more": len(items) > EMBEDDED,
            "total_count": len(items), "url": url}


def page_of(items: list[Obj], params: Params, url: str, kind: str) -> Obj:
    """One page of a whole list, after `starting_after` (the list endpoints of children)."""
    limit = parse_limit(params)
    ids = [item["id"] for item in items]
    start = 0
    after = params.one("starting_after")
    if after:
        if after not in ids:
            raise resource_missing(kind, after, param="starting_after")
        start = ids.index(after) + 1
    return {"object": "list", "data": items[start:start + limit],
            "has_more": start + limit < len(items), "url": url}
