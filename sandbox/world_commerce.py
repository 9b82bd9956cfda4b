"""The world's changes to disputes, coupons, credit notes, and to subscriptions and invoices
with long lists: each emits the events Stripe emits for it (SandboxWorld inherits these).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from sandbox.catalog import plan_of
from sandbox.commerce import embed
from sandbox.errors import ApiError
from sandbox.payments import REFUND, midnight_after_arr
from sandbox.tables import Obj
from sandbox.templates import template

if TYPE_CHECKING:
    from sandbox.account import SandboxAccount
    from sandbox.tables import Table

# A dispute's fee (in the account's minor unit per US cent: ctx.minor), as Stripe charges it.
DISPUTE_FEE_CENTS = 1500


class CommerceChanges:
    """Mixed into SandboxWorld: relies on its lock, _account, _row, _emit and clock."""

    lock: object

    # --- disputes --------------------------------------------------------------------------
    def dispute_charge(self, name: str, charge_id: str, amount: int | None = None,
                       reason: str = "fraudulent") -> Obj:
        """A customer disputes a charge: the amount and Stripe's fee leave the balance (one
        balance transaction), the charge says `disputed`; emits charge.dispute.created and
        charge.dispute.funds_withdrawn."""
        with self.lock:
            account = self._account(name)
            charges = account.tables["charges"]
            index = self._row(charges, charge_id)
            charge = copy.deepcopy(charges.get(index))
            if charge["status"] != "succeeded":
                raise ApiError(400, f"Charge {charge_id} was not paid: nothing to dispute.",
                               code="charge_not_disputable")
            if charge["disputed"]:
                raise ApiError(400, f"Charge {charge_id} is already disputed.",
                               code="charge_already_disputed")
            disputes = account.tables["disputes"]
            now = self.clock()
            amount = charge["amount"] if amount is None else int(amount)
            d = disputes.next_index()
            txn = self._dispute_txn(account, disputes.id_of(d), -amount,
                                    account.ctx.minor(DISPUTE_FEE_CENTS), charge, now,
                                    "dispute")
            dispute = template("dispute")
            dispute.update(
                id=disputes.id_of(d), created=now, amount=amount, charge=charge_id,
                currency=charge["currency"], payment_intent=charge["payment_intent"],
                livemode=account.ctx.livemode, reason=reason, status="needs_response",
                is_charge_refundable=False, balance_transactions=[txn], metadata={},
                enhanced_eligibility_types=[],
            )
            dispute["evidence_details"].update(due_by=now + 14 * 86_400)
            dispute["payment_method_details"]["card"].update(case_type="chargeback")
            disputes.append(dispute)
            charge["disputed"] = True
            charges.replace(index, charge)
            self._emit(account, "charge.dispute.created", dispute)
            self._emit(account, "charge.dispute.funds_withdrawn", dispute)
            return dispute

    def close_dispute(self, name: str, dispute_id: str, won: bool) -> Obj:
        """The bank decides: `won` gives the amount back (a dispute_reversal); emits
        charge.dispute.closed (and charge.dispute.funds_reinstated when won)."""
        with self.lock:
            account = self._account(name)
            disputes = account.tables["disputes"]
            index = self._row(disputes, dispute_id)
            dispute = copy.deepcopy(disputes.get(index))
            if dispute["status"] in ("won", "lost"):
                raise ApiError(400, f"Dispute {dispute_id} is already closed.",
                               code="dispute_already_closed")
            if won:
                charge = account.tables["charges"].get(
                    self._row(account.tables["charges"], dispute["charge"]))
                dispute["balance_transactions"].append(self._dispute_txn(
                    account, dispute_id, dispute["amount"], 0, charge, self.clock(),
                    "dispute_reversal"))
            dispute["status"] = "won" if won else "lost"
            disputes.replace(index, dispute)
            self._emit(account, "charge.dispute.closed", dispute)
            if won:
                self._emit(account, "charge.dispute.funds_reinstated", dispute)
            return dispute

    @staticmethod
    def _dispute_txn(account: SandboxAccount, dispute_id: str, amount: int, fee: int,
                     charge: Obj, now: int, category: str) -> Obj:
        txns = account.tables["balance_transactions"]
        t = txns.next_index()
        txn = account.payment_views.txn_obj(
            t, created=now, kind=REFUND, amount=amount, fee=fee,
            available_on=int(midnight_after_arr(now, 2)), source=dispute_id,
            description=f"Chargeback {'withdrawal' if amount < 0 else 'reversal'} for "
                        f"{charge['id']}", currency=charge["currency"])
        txn.update(type="adjustment", reporting_category=category)
        txns.append(txn)
        return txn

    # --- coupons ---------------------------------------------------------------------------
    def create_coupon(self, name: str, *, percent_off: float | None = None,
                      amount_off: int | None = None, duration: str = "forever",
                      coupon_name: str | None = None) -> Obj:
        with self.lock:
            account = self._account(name)
            coupons = account.tables["coupons"]
            obj = template("coupon")
            obj.update(
                id=coupons.id_of(coupons.next_index()), created=self.clock(),
                livemode=account.ctx.livemode, duration=duration, percent_off=percent_off,
                amount_off=amount_off, currency=account.ctx.currency if amount_off else None,
                name=coupon_name, times_redeemed=0, duration_in_months=None, redeem_by=None,
                metadata={},
            )
            coupons.append(obj)
            self._emit(account, "coupon.created", obj)
            return obj

    def update_coupon(self, name: str, coupon_id: str, coupon_name: str) -> Obj:
        """Only a coupon's name and metadata can change in Stripe; emits coupon.updated."""
        with self.lock:
            account = self._account(name)
            coupons = account.tables["coupons"]
            index = self._row(coupons, coupon_id)
            obj = copy.deepcopy(coupons.get(index))
            previous = {"name": obj["name"]}
            obj["name"] = coupon_name
            coupons.replace(index, obj)
            self._emit(account, "coupon.updated", obj, previous)
            return obj

    def delete_coupon(self, name: str, coupon_id: str) -> Obj:
        with self.lock:
            account = self._account(name)
            coupons = account.tables["coupons"]
            index = self._row(coupons, coupon_id)
            obj = copy.deepcopy(coupons.get(index))
            coupons.deleted.add(index)
            self._emit(account, "coupon.deleted", obj)
            return {"id": coupon_id, "object": "coupon", "deleted": True}

    # --- credit notes ----------------------------------------------------------------------
    def create_credit_note(self, name: str, invoice_id: str, amount: int,
                           reason: str | None = None) -> Obj:
        """Credit part of a finalized invoice; emits credit_note.created."""
        with self.lock:
            account = self._account(name)
            invoice = account.tables["invoices"].get(
                self._row(account.tables["invoices"], invoice_id))
            if invoice["status"] not in ("open", "paid"):
                raise ApiError(400, f"Invoice {invoice_id} is not finalized.",
                               code="invoice_not_finalized")
            notes = account.tables["credit_notes"]
            c = notes.next_index()
            now = self.clock()
            obj = template("credit_note")
            obj.update(
                id=notes.id_of(c), created=now, effective_at=now, amount=amount,
                subtotal=amount, subtotal_excluding_tax=amount, total=amount,
                total_excluding_tax=amount, currency=invoice["currency"],
                customer=invoice["customer"], invoice=invoice_id,
                livemode=account.ctx.livemode, reason=reason, status="issued",
                type="post_payment" if invoice["status"] == "paid" else "pre_payment",
                number=f"{invoice['number']}-CN-{c + 1:02d}", voided_at=None,
                out_of_band_amount=None, amount_shipping=0, shipping_cost=None,
                discount_amount=0, discount_amounts=[], pretax_credit_amounts=[],
                refunds=[], total_taxes=[], memo=None, metadata={}, pdf=None,
                lines={"object": "list", "data": [], "has_more": False,
                       "url": f"/v1/credit_notes/{notes.id_of(c)}/lines"},
            )
            notes.append(obj)
            self._emit(account, "credit_note.created", obj)
            return obj

    def void_credit_note(self, name: str, credit_note_id: str) -> Obj:
        with self.lock:
            account = self._account(name)
            notes = account.tables["credit_notes"]
            index = self._row(notes, credit_note_id)
            obj = copy.deepcopy(notes.get(index))
            obj.update(status="void", voided_at=self.clock())
            notes.replace(index, obj)
            self._emit(account, "credit_note.voided", obj,
                       {"status": "issued", "voided_at": None})
            return obj

    # --- subscriptions and invoices with more than EMBEDDED items ---------------------------
    def create_subscription(self, name: str, customer: str,
                            items: list[tuple[str, int]]) -> Obj:
        """An active subscription of (price id, quantity) items; it embeds the first
        EMBEDDED and the rest are paged from /v1/subscription_items. Emits
        customer.subscription.created."""
        with self.lock:
            account = self._account(name)
            self._row(account.tables["customers"], customer)
            subs = account.tables["subscriptions"]
            sub_id = subs.id_of(subs.next_index())
            now = self.clock()
            whole = [self._item(account, sub_id, price, quantity, now, k)
                     for k, (price, quantity) in enumerate(items)]
            obj = copy.deepcopy(account.billing_views.subscription(0)) if subs.n_base else \
                template("subscription")
            obj.update(
                id=sub_id, created=now, start_date=now, billing_cycle_anchor=now,
                customer=customer, currency=account.ctx.currency, status="active",
                trial_start=None, trial_end=None, cancel_at_period_end=False, cancel_at=None,
                canceled_at=None, ended_at=None, discounts=[], latest_invoice=None,
                livemode=account.ctx.livemode, metadata={},
                items=embed(whole, f"/v1/subscription_items?subscription={sub_id}"),
            )
            account.long_lists[sub_id] = whole
            subs.append(obj)
            self._emit(account, "customer.subscription.created", obj)
            return obj

    def add_subscription_item(self, name: str, sub_id: str, price: str, quantity: int = 1) -> Obj:
        """Emits customer.subscription.updated."""
        with self.lock:
            account, index, obj, whole = self._sub_with_items(name, sub_id)
            whole.append(self._item(account, sub_id, price, quantity, self.clock(),
                                    len(whole)))
            return self._save_items(account, index, obj, whole)

    def remove_subscription_item(self, name: str, sub_id: str, item_id: str) -> Obj:
        """Emits customer.subscription.updated."""
        with self.lock:
            account, index, obj, whole = self._sub_with_items(name, sub_id)
            whole = [item for item in whole if item["id"] != item_id]
            return self._save_items(account, index, obj, whole)

    def _sub_with_items(self, name: str, sub_id: str
                        ) -> tuple[SandboxAccount, int, Obj, list[Obj]]:
        account = self._account(name)
        subs = account.tables["subscriptions"]
        index = self._row(subs, sub_id)
        obj = copy.deepcopy(subs.get(index))
        whole = list(account.long_lists.get(sub_id, obj["items"]["data"]))
        return account, index, obj, whole

    def _save_items(self, account: SandboxAccount, index: int, obj: Obj,
                    whole: list[Obj]) -> Obj:
        previous = {"items": obj["items"]}
        obj["items"] = embed(whole, obj["items"]["url"])
        account.long_lists[obj["id"]] = whole
        account.tables["subscriptions"].replace(index, obj)
        self._emit(account, "customer.subscription.updated", obj, previous)
        return obj

    @staticmethod
    def _item(account: SandboxAccount, sub_id: str, price_id: str, quantity: int, now: int,
              position: int) -> Obj:
        prices: Table = account.tables["prices"]
        index = prices.index_of(price_id)
        if index is None:
            raise ApiError(400, f"No such price: '{price_id}'", code="resource_missing",
                           param="items")
        price = prices.get(index)
        codec = account.ctx.codec("si_")
        item = template("subscription_item")
        start, end = now, now + 30 * 86_400
        item.update(
            # Numbered after every generated item (one per subscription and position).
            id=codec.make(1_000_000_000 + next(account.made_ids)),
            created=now, price=price, plan=plan_of(price), quantity=quantity,
            subscription=sub_id, current_period_start=start, current_period_end=end,
            discounts=[], metadata={},
        )
        return item

    def create_invoice(self, name: str, customer: str, lines: list[tuple[str, int]]) -> Obj:
        """A draft invoice of (description, amount) lines, the first EMBEDDED embedded and
        the rest paged from /v1/invoices/{id}/lines; emits invoice.created."""
        with self.lock:
            account = self._account(name)
            self._row(account.tables["customers"], customer)
            invoices = account.tables["invoices"]
            inv_id = invoices.id_of(invoices.next_index())
            now = self.clock()
            codec = account.ctx.codec("il_")
            whole = []
            for k, (description, amount) in enumerate(lines):
                line = template("line_item")
                line.update(
                    id=codec.make(1_000_000_000 + next(account.made_ids)), invoice=inv_id,
                    amount=amount, subtotal=amount,
                    currency=account.ctx.currency, description=description, quantity=1,
                    quantity_decimal="1", livemode=account.ctx.livemode, subscription=None,
                    period={"start": now, "end": now}, discounts=[], discount_amounts=[],
                    taxes=[], pretax_credit_amounts=[], metadata={},
                    parent={"invoice_item_details": {
                        "invoice_item": f"ii_{inv_id[3:]}{k}", "proration": False,
                        "proration_details": {"credited_items": None}, "subscription": None},
                        "subscription_item_details": None, "type": "invoice_item_details"},
                    pricing=None,
                )
                whole.append(line)
            total = sum(amount for _, amount in lines)
            obj = template("invoice")
            obj.update(
                id=inv_id, created=now, effective_at=None, customer=customer,
                currency=account.ctx.currency, livemode=account.ctx.livemode,
                subscription=None, parent=None, billing_reason="manual", status="draft",
                period_start=now, period_end=now, subtotal=total,
                subtotal_excluding_tax=total, total=total, total_excluding_tax=total,
                amount_due=total, amount_paid=0, amount_remaining=total, attempted=False,
                attempt_count=0, discounts=[], total_discount_amounts=[], number=None,
                metadata={}, lines=embed(whole, f"/v1/invoices/{inv_id}/lines"),
            )
            account.long_lists[inv_id] = whole
            invoices.append(obj)
            self._emit(account, "invoice.created", obj)
            return obj

    def delete_invoice(self, name: str, invoice_id: str) -> Obj:
        """Delete a draft invoice: lists omit it; emits invoice.deleted."""
        with self.lock:
            account = self._account(name)
            invoices = account.tables["invoices"]
            index = self._row(invoices, invoice_id)
            obj = copy.deepcopy(invoices.get(index))
            if obj["status"] != "draft":
                raise ApiError(400, "You can only delete draft invoices.",
                               code="invoice_not_editable")
            invoices.deleted.add(index)
            self._emit(account, "invoice.deleted", obj)
            return {"id": invoice_id, "object": "invoice", "deleted": True}

