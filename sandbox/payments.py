"""Charges, refunds, balance transactions and payouts as numpy columns, rendered on demand.

Generation is vectorized so an account with a million charges builds in a couple of seconds
and costs tens of bytes per charge; objects become dicts only when a request reads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sandbox.context import DAY, Ctx, midnight_after
from sandbox.tables import Obj, Table, field_filter
from sandbox.templates import shared_template

CHARGE, REFUND, PAYOUT = 0, 1, 2
TXN_TYPES = ("charge", "refund", "payout")
_FAILURES = (
    ("card_declined", "Your card was declined.", "generic_decline"),
    ("card_declined", "Your card has insufficient funds.", "insufficient_funds"),
    ("expired_card", "Your card has expired.", "expired_card"),
    ("incorrect_cvc", "Your card's security code is incorrect.", "incorrect_cvc"),
    (
        "processing_error",
        "An error occurred while processing your card. Try again.",
        "processing_error",
    ),
)
_CARDS = (
    ("visa", "4242", "credit", "US"),
    ("mastercard", "4444", "credit", "US"),
    ("amex", "8431", "credit", "US"),
    ("visa", "5556", "debit", "GB"),
)
_REASONS = (None, "requested_by_customer", "duplicate", "fraudulent")
_DESCRIPTIONS = ("Order", "Invoice payment", "Subscription update", "Top-up", "Booking")


@dataclass
class Payments:
    ch_created: np.ndarray
    ch_amount: np.ndarray
    ch_failure: np.ndarray  # -1 succeeded, else index into _FAILURES
    ch_customer: np.ndarray  # -1 none
    ch_card: np.ndarray
    ch_refund: np.ndarray  # -1 none, else refund index
    ch_txn: np.ndarray  # -1 none (failed)
    re_created: np.ndarray
    re_charge: np.ndarray
    re_amount: np.ndarray
    re_reason: np.ndarray
    re_txn: np.ndarray
    po_created: np.ndarray
    po_amount: np.ndarray
    po_arrival: np.ndarray
    po_txn: np.ndarray
    tx_created: np.ndarray
    tx_kind: np.ndarray
    tx_src: np.ndarray
    tx_amount: np.ndarray
    tx_fee: np.ndarray
    tx_available_on: np.ndarray


def fee_for(ctx: Ctx, amount: int) -> int:
    return int(round(amount * 0.029)) + ctx.minor(30)


def build_payments(ctx: Ctx, customer_created: np.ndarray) -> Payments:
    rng = ctx.rng
    n = max(0, ctx.spec.charges)
    span = max(1, ctx.end - ctx.start)
    created = np.sort(ctx.start + (rng.random(n) ** 0.8 * span).astype(np.int64))
    if n:
        created[-1] = ctx.end
    cents = np.clip(rng.lognormal(np.log(4000), 0.8, n), 100, 500_000)
    amount = _to_minor(ctx, np.round(cents / 50) * 50)
    failed = rng.random(n) < ctx.spec.failure_rate
    failure = np.where(failed, rng.integers(0, len(_FAILURES), n), -1).astype(np.int8)
    known = np.searchsorted(customer_created, created, side="right")
    with_customer = (rng.random(n) < 0.85) & (known > 0)
    customer = np.where(with_customer, (rng.random(n) * known).astype(np.int64), -1)
    card = rng.integers(0, len(_CARDS), n).astype(np.int8)

    # Refunds: some succeeded charges, fully or partly, a few days later.
    refunded = ~failed & (rng.random(n) < 0.06)
    re_charge_unsorted = np.flatnonzero(refunded)
    full = rng.random(len(re_charge_unsorted)) < 0.6
    share = np.where(full, 1.0, rng.uniform(0.1, 0.9, len(re_charge_unsorted)))
    re_amount_unsorted = np.maximum(1, np.round(amount[re_charge_unsorted] * share)).astype(
        np.int64
    )
    delay = (rng.exponential(3 * DAY, len(re_charge_unsorted)) + 600).astype(np.int64)
    re_created_unsorted = np.minimum(created[re_charge_unsorted] + delay, ctx.end)
    order = np.lexsort((re_charge_unsorted, re_created_unsorted))
    re_charge = re_charge_unsorted[order]
    re_amount = re_amount_unsorted[order]
    re_created = re_created_unsorted[order]
    re_reason = rng.integers(0, len(_REASONS), len(re_charge)).astype(np.int8)
    ch_refund = np.full(n, -1, dtype=np.int64)
    ch_refund[re_charge] = np.arange(len(re_charge))

    # Balance transactions of charges and refunds, then payouts of what became available.
    ok = np.flatnonzero(~failed)
    fee = np.round(amount[ok] * 0.029).astype(np.int64) + ctx.minor(30)
    flows_available = np.concatenate([midnight_after_arr(created[ok], 2), re_created])
    flows_net = np.concatenate([amount[ok] - fee, -re_amount])
    po_created, po_amount = _payouts(ctx, flows_available, flows_net)
    po_arrival = midnight_after_arr(po_created, 2)

    kinds = np.concatenate(
        [
            np.full(len(ok), CHARGE, np.int8),
            np.full(len(re_charge), REFUND, np.int8),
            np.full(len(po_created), PAYOUT, np.int8),
        ]
    )
    src = np.concatenate([ok, np.arange(len(re_charge)), np.arange(len(po_created))])
    tx_created_all = np.concatenate([created[ok], re_created, po_created])
    order = np.lexsort((src, kinds, tx_created_all))
    tx_kind = kinds[order]
    tx_src = src[order]
    tx_amount = np.concatenate([amount[ok], -re_amount, -po_amount])[order]
    tx_fee = np.concatenate([fee, np.zeros(len(re_charge) + len(po_created), np.int64)])[order]
    tx_available_on = np.concatenate([flows_available, po_created])[order]
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    ch_txn = np.full(n, -1, dtype=np.int64)
    ch_txn[ok] = position[: len(ok)]
    re_txn = position[len(ok) : len(ok) + len(re_charge)]
    po_txn = position[len(ok) + len(re_charge) :]
    return Payments(
        created,
        amount,
        failure,
        customer,
        card,
        ch_refund,
        ch_txn,
        re_created,
        re_charge,
        re_amount,
        re_reason,
        re_txn,
        po_created,
        po_amount,
        po_arrival,
        po_txn,
        tx_created_all[order],
        tx_kind,
        tx_src,
        tx_amount,
        tx_fee,
        tx_available_on,
    )


def midnight_after_arr(ts: np.ndarray, days: int) -> np.ndarray:
    return (ts // DAY + days) * DAY


def _to_minor(ctx: Ctx, cents: np.ndarray) -> np.ndarray:
    if ctx.minor(1000) == 1000:
        return cents.astype(np.int64)
    factor = ctx.minor(1000) / 1000
    return np.maximum(10, np.round(cents * factor / 10) * 10).astype(np.int64)


def _payouts(ctx: Ctx, available_on: np.ndarray, net: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every few days, pay out everything that has become available since the last payout."""
    order = np.argsort(available_on, kind="stable")
    when = available_on[order]
    running = np.cumsum(net[order])
    times: list[int] = []
    amounts: list[int] = []
    paid = 0
    moment = midnight_after(ctx.start, 3) + 3600
    rng = ctx.prng
    while moment < ctx.end:
        pos = int(np.searchsorted(when, moment, side="right"))
        available = int(running[pos - 1]) if pos else 0
        amount = available - paid
        if amount >= ctx.minor(100):
            times.append(moment)
            amounts.append(amount)
            paid += amount
        moment = midnight_after(moment, rng.randint(2, 5)) + rng.randint(1800, 7200)
    return np.array(times, dtype=np.int64), np.array(amounts, dtype=np.int64)


class PaymentViews:
    """Renders charges, refunds, balance transactions and payouts of one account."""

    def __init__(self, ctx: Ctx, p: Payments, customer_name: Callable[[int], str | None]) -> None:
        self.ctx = ctx
        self.p = p
        self.customer_name = customer_name
        self.ch = ctx.codec("ch_")
        self.re = ctx.codec("re_")
        self.txn_ids = ctx.codec("txn_")
        self.po = ctx.codec("po_")
        self.pi = ctx.codec("pi_")
        self.pm = ctx.codec("pm_")
        self.cus = ctx.codec("cus_")
        self.destination = ctx.codec("ba_").make(0)
        self._charge_t = shared_template("charge")
        self._refund_t = shared_template("refund")
        self._txn_t = shared_template("balance_transaction")
        self._payout_t = shared_template("payout")
        self._cards = [_card_details(*card) for card in _CARDS]
        self._outcome_ok = {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
        self._outcomes_failed = [
            {
                **self._outcome_ok,
                "network_status": "declined_by_network",
                "reason": reason,
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            }
            for _, _, reason in _FAILURES
        ]
        self._address = shared_template("charge")["billing_details"]["address"]

    # charges
    def charge(self, i: int) -> Obj:
        p = self.p
        refund = int(p.ch_refund[i])
        refunds = [self.refund(refund)] if refund >= 0 else []
        customer = int(p.ch_customer[i])
        txn = int(p.ch_txn[i])
        return self.charge_obj(
            i,
            created=int(p.ch_created[i]),
            amount=int(p.ch_amount[i]),
            failure=int(p.ch_failure[i]),
            customer=self.cus.make(customer) if customer >= 0 else None,
            customer_name=self.customer_name(customer) if customer >= 0 else None,
            card=int(p.ch_card[i]),
            refunds=refunds,
            txn_id=self.txn_ids.make(txn) if txn >= 0 else None,
        )

    def charge_obj(
        self,
        i: int,
        *,
        created: int,
        amount: int,
        failure: int,
        customer: str | None,
        customer_name: str | None,
        card: int,
        refunds: list[Obj],
        txn_id: str | None,
        currency: str | None = None,
    ) -> Obj:
        charge_id = self.ch.make(i)
        failed = failure >= 0
        refunded = sum(r["amount"] for r in refunds)
        obj = dict(self._charge_t)
        obj.update(
            id=charge_id,
            amount=amount,
            amount_captured=0 if failed else amount,
            amount_refunded=refunded,
            balance_transaction=txn_id,
            billing_details={
                "address": self._address,
                "email": None,
                "name": customer_name,
                "phone": None,
                "tax_id": None,
            },
            captured=not failed,
            created=created,
            currency=currency or self.ctx.currency,
            customer=customer,
            description=f"{_DESCRIPTIONS[i % len(_DESCRIPTIONS)]} #{1000 + i}",
            failure_code=_FAILURES[failure][0] if failed else None,
            failure_message=_FAILURES[failure][1] if failed else None,
            livemode=self.ctx.livemode,
            outcome=self._outcomes_failed[failure] if failed else self._outcome_ok,
            paid=not failed,
            payment_intent=self.pi.make(i),
            payment_method=self.pm.make(i),
            payment_method_details=self._cards[card],
            receipt_url=None if failed else f"https://pay.stripe.com/receipts/sandbox/{charge_id}",
            refunded=bool(refunds) and refunded >= amount,
            refunds={
                "object": "list",
                "data": refunds,
                "has_more": False,
                "total_count": len(refunds),
                "url": f"/v1/charges/{charge_id}/refunds",
            },
            status="failed" if failed else "succeeded",
            metadata={},
        )
        return obj

    # refunds
    def refund(self, r: int) -> Obj:
        p = self.p
        charge = int(p.re_charge[r])
        customer = int(p.ch_customer[charge])
        return self.refund_obj(
            r,
            created=int(p.re_created[r]),
            amount=int(p.re_amount[r]),
            charge_id=self.ch.make(charge),
            payment_intent=self.pi.make(charge),
            customer=self.cus.make(customer) if customer >= 0 else None,
            reason=_REASONS[int(p.re_reason[r])],
            txn_id=self.txn_ids.make(int(p.re_txn[r])),
        )

    def refund_obj(
        self,
        r: int,
        *,
        created: int,
        amount: int,
        charge_id: str,
        payment_intent: str | None,
        customer: str | None,
        reason: str | None,
        txn_id: str,
        currency: str | None = None,
    ) -> Obj:
        obj = dict(self._refund_t)
        obj.update(
            id=self.re.make(r),
            amount=amount,
            balance_transaction=txn_id,
            charge=charge_id,
            created=created,
            currency=currency or self.ctx.currency,
            payment_intent=payment_intent,
            reason=reason,
            status="succeeded",
            customer=customer,
            metadata={},
        )
        return obj

    # balance transactions
    def txn(self, t: int) -> Obj:
        p = self.p
        kind = int(p.tx_kind[t])
        src = int(p.tx_src[t])
        source = (self.ch, self.re, self.po)[kind].make(src)
        if kind == CHARGE:
            description = f"{_DESCRIPTIONS[src % len(_DESCRIPTIONS)]} #{1000 + src}"
        elif kind == REFUND:
            description = f"REFUND FOR CHARGE ({self.ch.make(int(p.re_charge[src]))})"
        else:
            description = "STRIPE PAYOUT"
        return self.txn_obj(
            t,
            created=int(p.tx_created[t]),
            kind=kind,
            amount=int(p.tx_amount[t]),
            fee=int(p.tx_fee[t]),
            available_on=int(p.tx_available_on[t]),
            source=source,
            description=description,
        )

    def txn_obj(
        self,
        t: int,
        *,
        created: int,
        kind: int,
        amount: int,
        fee: int,
        available_on: int,
        source: str,
        description: str,
        currency: str | None = None,
    ) -> Obj:
        currency = currency or self.ctx.currency
        obj = dict(self._txn_t)
        obj.update(
            id=self.txn_ids.make(t),
            amount=amount,
            available_on=available_on,
            created=created,
            currency=currency,
            description=description,
            fee=fee,
            fee_details=[
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else [],
            net=amount - fee,
            reporting_category=TXN_TYPES[kind],
            source=source,
            status="available" if available_on <= time.time() else "pending",
            type=TXN_TYPES[kind],
        )
        return obj

    # payouts
    def payout(self, k: int) -> Obj:
        p = self.p
        arrival = int(p.po_arrival[k])
        paid = arrival <= time.time()
        obj = dict(self._payout_t)
        obj.update(
            id=self.po.make(k),
            amount=int(p.po_amount[k]),
            arrival_date=arrival,
            balance_transaction=self.txn_ids.make(int(p.po_txn[k])),
            created=int(p.po_created[k]),
            currency=self.ctx.currency,
            destination=self.destination,
            livemode=self.ctx.livemode,
            status="paid" if paid else "in_transit",
            reconciliation_status="completed" if paid else "in_progress",
            metadata={},
        )
        return obj


def _card_details(brand: str, last4: str, funding: str, country: str) -> Obj:
    card = dict(shared_template("charge")["payment_method_details"]["card"])
    card.update(
        brand=brand,
        last4=last4,
        funding=funding,
        country=country,
        network=brand,
        exp_month=(int(last4) % 12) + 1,
        exp_year=2030,
        wallet=None,
        fingerprint=f"sbx{brand[:2]}{last4}{country}",
        checks={
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
    )
    return {"card": card, "type": "card"}


def payment_tables(ctx: Ctx, views: PaymentViews) -> dict[str, Table]:
    p = views.p

    def index_mask(codec, column: np.ndarray):
        def mask(value: str) -> np.ndarray:
            index = codec.index_of(value)
            return column == (-1 if index is None else index)

        return mask

    charge_rows = np.arange(len(p.ch_created))
    return {
        "charges": Table(
            "charges",
            "charge",
            views.ch,
            p.ch_created,
            views.charge,
            {
                "customer": field_filter("customer", index_mask(views.cus, p.ch_customer)),
                "payment_intent": field_filter("payment_intent", index_mask(views.pi, charge_rows)),
            },
        ),
        "refunds": Table(
            "refunds",
            "refund",
            views.re,
            p.re_created,
            views.refund,
            {"charge": field_filter("charge", index_mask(views.ch, p.re_charge))},
        ),
        "balance_transactions": Table(
            "balance_transactions",
            "balance_transaction",
            views.txn_ids,
            p.tx_created,
            views.txn,
            {
                "type": field_filter(
                    "type",
                    lambda v: p.tx_kind == (TXN_TYPES.index(v) if v in TXN_TYPES else -1),
                ),
                "source": field_filter("source"),
            },
        ),
        "payouts": Table(
            "payouts",
            "payout",
            views.po,
            p.po_created,
            views.payout,
            {"status": field_filter("status")},
        ),
    }


def balance(ctx: Ctx, tables: dict[str, Table], p: Payments) -> Obj:
    """Available and pending funds from every balance transaction, as of now, per currency
    (a charge made in another currency is held in that currency, as Stripe does when the
    account settles in it)."""
    now = time.time()
    net = p.tx_amount - p.tx_fee
    ready = p.tx_available_on <= now
    funds = {ctx.currency: {"available": int(net[ready].sum()),
                            "pending": int(net[~ready].sum())}}
    txns = tables["balance_transactions"]
    for t in range(txns.n_base, len(txns)):
        obj = txns.get(t)
        kind = "available" if obj["available_on"] <= now else "pending"
        funds.setdefault(obj["currency"], {"available": 0, "pending": 0})[kind] += obj["net"]

    def amounts(kind: str) -> list[Obj]:
        return [{"amount": f[kind], "currency": c, "source_types": {"card": f[kind]}}
                for c, f in funds.items()]

    obj = dict(shared_template("balance"))
    obj.update(
        available=amounts("available"),
        pending=amounts("pending"),
        connect_reserved=[{"amount": 0, "currency": c} for c in funds],
        livemode=ctx.livemode,
    )
    return obj
