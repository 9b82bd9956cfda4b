"""One generated Stripe account: its keys, its tables and the views that render them."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from sandbox.billing import BillingViews, billing_tables, build_billing
from sandbox.catalog import build_catalog, catalog_tables
from sandbox.commerce import commerce_tables
from sandbox.context import AccountSpec, Ctx
from sandbox.events import RETENTION, EventLog, events_table
from sandbox.ids import digest62
from sandbox.payments import PaymentViews, balance, build_payments, payment_tables
from sandbox.tables import Obj, Table
from sandbox.templates import template

if TYPE_CHECKING:
    from sandbox.world import SandboxWorld

# List paths a restricted key can be denied, and the permission Stripe would name.
PERMISSIONS = {
    "charges": "rak_charge_read",
    "refunds": "rak_refund_read",
    "customers": "rak_customer_read",
    "subscriptions": "rak_subscription_read",
    "invoices": "rak_invoice_read",
    "balance_transactions": "rak_balance_transaction_source_read",
    "payouts": "rak_payout_read",
    "products": "rak_product_read",
    "prices": "rak_price_read",
    "disputes": "rak_dispute_read",
    "coupons": "rak_coupon_read",
    "credit_notes": "rak_credit_note_read",
    "payment_intents": "rak_payment_intent_read",
    "events": "rak_event_read",
    "balance": "rak_balance_read",
}


class SandboxAccount:
    """A Stripe account of the sandbox. Keys are fake and derived from (seed, name)."""

    def __init__(self, world: SandboxWorld, seed: int, spec: AccountSpec, now: int) -> None:
        self.world = world
        self.spec = spec
        self.name = spec.name
        self.ctx = Ctx(seed=seed, spec=spec, now=now)
        self.account_id = self.ctx.account_id
        mode = "live" if spec.livemode else "test"
        self.secret_key = f"sk_{mode}_" + digest62(seed, spec.name, "secret", width=40)
        self.publishable_key = f"pk_{mode}_" + digest62(seed, spec.name, "publishable", width=40)
        self.expired_key = f"sk_{mode}_" + digest62(seed, spec.name, "expired", width=40)
        self.revoked_key = f"sk_{mode}_" + digest62(seed, spec.name, "revoked", width=40)
        self._mode = mode
        self._seed = seed
        self.tables: dict[str, Table] = {}
        # Whole child lists of parents that embed only their first items (sandbox/commerce.py),
        # by parent id: a subscription's items, an invoice's lines.
        self.long_lists: dict[str, list[Obj]] = {}
        self.made_ids = itertools.count()  # numbers for the ids of items and lines made later
        self._build()

    def __repr__(self) -> str:
        return f"SandboxAccount({self.name!r}, {self.account_id})"

    def _build(self) -> None:
        ctx = self.ctx
        catalog = build_catalog(ctx)
        billing = build_billing(ctx, catalog)
        self.billing_views = BillingViews(ctx, catalog, billing)
        payments = build_payments(ctx, billing.customer_created)
        self.payments = payments
        self.payment_views = PaymentViews(ctx, payments, self.billing_views.customer_name)
        self.catalog = catalog
        tables = self.tables
        tables.update(catalog_tables(ctx, catalog))
        tables.update(billing_tables(ctx, self.billing_views))
        tables.update(payment_tables(ctx, self.payment_views))
        tables.update(commerce_tables(ctx, self.payment_views, tables["charges"],
                                      catalog.coupons))
        log = EventLog(since=ctx.now - RETENTION)
        self._log_history(log, billing, payments)
        tables["events"] = events_table(ctx, log, tables)

    def _log_history(self, log: EventLog, billing, payments) -> None:
        ch_types = np.where(payments.ch_failure >= 0, "charge.failed", "charge.succeeded")
        log.add("charges", payments.ch_created, np.arange(len(payments.ch_created)), ch_types)
        rows = np.arange(len(payments.re_created))
        log.add("charges", payments.re_created, payments.re_charge, "charge.refunded")
        log.add("refunds", payments.re_created, rows, "refund.created")
        log.add(
            "customers",
            billing.customer_created,
            np.arange(len(billing.customer_created)),
            "customer.created",
        )
        subs = billing.subs
        log.add(
            "subscriptions",
            [s.created for s in subs],
            np.arange(len(subs)),
            "customer.subscription.created",
        )
        ended = [i for i, s in enumerate(subs) if s.ended_at is not None]
        log.add(
            "subscriptions",
            [subs[i].ended_at for i in ended],
            ended,
            "customer.subscription.deleted",
        )
        invoices = billing.invoices
        log.add(
            "invoices",
            [row[0] for row in invoices],
            np.arange(len(invoices)),
            np.array(["invoice.paid" if row[4] else "invoice.payment_failed" for row in invoices]),
        )
        log.add(
            "payouts", payments.po_created, np.arange(len(payments.po_created)), "payout.created"
        )
        arrived = payments.po_arrival <= self.ctx.end
        log.add("payouts", payments.po_arrival[arrived], np.flatnonzero(arrived), "payout.paid")

    # --- keys ---------------------------------------------------------------------------------
    def restricted_key(self, without: set[str] | frozenset[str] = frozenset()) -> str:
        """An rk_ key that can read every resource except the list paths named in `without`."""
        unknown = set(without) - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown resources: {sorted(unknown)}; use {sorted(PERMISSIONS)}")
        label = ",".join(sorted(without))
        key = f"rk_{self._mode}_" + digest62(self._seed, self.name, "restricted", label, width=40)
        self.world.register_restricted(key, self, frozenset(without))
        return key

    # --- objects ------------------------------------------------------------------------------
    def account_object(self) -> Obj:
        obj = template("account")
        country = (
            "JP" if self.ctx.currency == "jpy" else ("DE" if self.ctx.currency == "eur" else "US")
        )
        obj.update(
            id=self.account_id,
            created=self.ctx.start,
            country=country,
            default_currency=self.ctx.currency,
            email=f"billing@{self.name.lower()}.example.com",
            type="standard" if not self.spec.connected_to else "express",
        )
        obj["business_profile"]["name"] = self.name.capitalize()
        obj["settings"]["dashboard"]["display_name"] = self.name.capitalize()
        obj["external_accounts"]["url"] = f"/v1/accounts/{self.account_id}/external_accounts"
        obj["requirements"].update(currently_due=[], eventually_due=[], disabled_reason=None)
        return obj

    def balance_object(self) -> Obj:
        return balance(self.ctx, self.tables, self.payments)

    def table(self, path: str) -> Table:
        return self.tables[path]

    def find(self, object_id: str) -> Obj | None:
        """Any object of this account by id (what `expand[]` resolves), or None."""
        for table in self.tables.values():
            if object_id.startswith(table.codec.head):
                index = table.index_of(object_id)
                if index is None:
                    return None
                if index in table.deleted:
                    return {"id": object_id, "object": table.object_name, "deleted": True}
                return table.get(index)
        return None
