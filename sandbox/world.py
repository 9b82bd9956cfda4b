"""The sandbox world: generated accounts, their keys, and the changes Stripe would make.

Every change goes through one method here, whether a test calls it or the HTTP API does,
and emits the events Stripe emits for it (data.object = the object after the change).
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from sandbox.account import SandboxAccount
from sandbox.commerce import payment_intent_obj
from sandbox.context import AccountSpec
from sandbox.errors import ApiError, resource_missing
from sandbox.events import event_obj
from sandbox.payments import CHARGE, REFUND, fee_for, midnight_after_arr
from sandbox.tables import Obj, Table
from sandbox.world_commerce import CommerceChanges

_CUSTOMER_FIELDS = {
    "email",
    "name",
    "description",
    "phone",
    "metadata",
    "address",
    "shipping",
    "preferred_locales",
    "invoice_prefix",
    "balance",
    "tax_exempt",
}


@dataclass(frozen=True)
class KeyInfo:
    account: SandboxAccount
    kind: str  # "secret", "restricted", "publishable", "expired"
    denied: frozenset[str] = frozenset()


class SandboxWorld(CommerceChanges):
    def __init__(self, seed: int, now: int) -> None:
        self.seed = seed
        self.now = now
        self.accounts: dict[str, SandboxAccount] = {}
        self.by_id: dict[str, SandboxAccount] = {}
        self.keys: dict[str, KeyInfo] = {}
        self.revoked: set[str] = set()
        self.lock = threading.RLock()
        self._rng = random.Random(f"{seed}:mutations")

    @classmethod
    def generate(
        cls, seed: int, specs: Iterable[AccountSpec], now: int | None = None
    ) -> SandboxWorld:
        """Build every account; the same seed, specs and `now` give the same data."""
        specs = list(specs)
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError("account names must be unique")
        for spec in specs:
            if spec.connected_to and spec.connected_to not in names:
                raise ValueError(f"{spec.name} is connected to unknown account {spec.connected_to}")
        world = cls(seed, int(time.time()) if now is None else int(now))
        for spec in specs:
            world._add(SandboxAccount(world, seed, spec, world.now))
        return world

    def _add(self, account: SandboxAccount) -> None:
        self.accounts[account.name] = account
        self.by_id[account.account_id] = account
        self.keys[account.secret_key] = KeyInfo(account, "secret")
        self.keys[account.publishable_key] = KeyInfo(account, "publishable")
        self.keys[account.expired_key] = KeyInfo(account, "expired")
        self.revoked.add(account.revoked_key)

    def register_restricted(
        self, key: str, account: SandboxAccount, denied: frozenset[str]
    ) -> None:
        self.keys[key] = KeyInfo(account, "restricted", denied)

    def revoke_key(self, name: str) -> None:
        """The account's secret key is rejected with 401 from now on."""
        self.revoked.add(self.accounts[name].secret_key)

    def key_info(self, key: str) -> KeyInfo | None:
        """None for unknown and revoked keys alike (Stripe answers both the same way)."""
        if key in self.revoked:
            return None
        return self.keys.get(key)

    def connected(self, platform: SandboxAccount, account_id: str) -> SandboxAccount | None:
        if account_id == platform.account_id:
            return platform
        account = self.by_id.get(account_id)
        if account is not None and account.spec.connected_to == platform.name:
            return account
        return None

    # --- helpers --------------------------------------------------------------------------------
    @staticmethod
    def clock() -> int:
        return int(time.time())

    def _account(self, name: str) -> SandboxAccount:
        try:
            return self.accounts[name]
        except KeyError:
            raise KeyError(f"no sandbox account named {name!r}") from None

    @staticmethod
    def _row(table: Table, object_id: str) -> int:
        index = table.index_of(object_id)
        if index is None or index in table.deleted:
            raise resource_missing(table.object_name, object_id)
        return index

    @staticmethod
    def _copy(obj: Obj) -> Obj:
        return copy.deepcopy(obj)

    def _emit(
        self, account: SandboxAccount, type_: str, obj: Obj, previous: Obj | None = None
    ) -> Obj:
        events = account.tables["events"]
        snapshot = orjson.loads(orjson.dumps(obj))
        event = event_obj(
            account.ctx, events.id_of(events.next_index()), self.clock(), type_, snapshot, previous
        )
        events.append(event)
        return event

    # --- charges and refunds -------------------------------------------------------------------
    def create_charge(
        self,
        name: str,
        amount: int,
        currency: str | None = None,
        customer: str | None = None,
        status: str = "succeeded",
    ) -> Obj:
        """A new charge (and, if it succeeded, its balance transaction); emits charge.<status>.

        `currency` defaults to the account's own (accounts are single-currency)."""
        if status not in ("succeeded", "failed"):
            raise ValueError("status must be 'succeeded' or 'failed'")
        if amount <= 0:
            raise ApiError(
                400, "Amount must be at least 1.", code="amount_too_small", param="amount"
            )
        with self.lock:
            account = self._account(name)
            views = account.payment_views
            charges, txns = account.tables["charges"], account.tables["balance_transactions"]
            customer_name = None
            if customer:
                c_index = self._row(account.tables["customers"], customer)
                customer_name = account.tables["customers"].get(c_index)["name"]
            now = self.clock()
            index = charges.next_index()
            txn_id = None
            currency = (currency or account.ctx.currency).lower()
            if status == "succeeded":
                t = txns.next_index()
                txn_id = txns.id_of(t)
                fee = fee_for(account.ctx, amount)
                txns.append(
                    views.txn_obj(
                        t,
                        created=now,
                        kind=CHARGE,
                        amount=amount,
                        fee=fee,
                        available_on=int(midnight_after_arr(now, 2)),
                        source=charges.id_of(index),
                        description=f"Charge #{1000 + index}",
                        currency=currency,
                    )
                )
            charge = views.charge_obj(
                index,
                created=now,
                amount=amount,
                failure=-1 if status == "succeeded" else 0,
                customer=customer,
                customer_name=customer_name,
                card=index % 4,
                refunds=[],
                txn_id=txn_id,
                currency=currency,
            )
            charges.append(charge)
            intent = payment_intent_obj(charge)  # charge i was paid through pi i
            account.tables["payment_intents"].append(intent)
            self._emit(account, "payment_intent.created", intent)
            self._emit(account, f"charge.{status}", charge)
            self._emit(account, "payment_intent.succeeded" if status == "succeeded"
                       else "payment_intent.payment_failed", intent)
            return charge

    def add_charges(self, name: str, n: int) -> list[Obj]:
        """`n` new charges of ordinary sizes, about one in twelve failed, with their events."""
        made = []
        for _ in range(n):
            cents = max(100, int(self._rng.lognormvariate(8.3, 0.8) // 50 * 50))
            account = self._account(name)
            status = "failed" if self._rng.random() < account.spec.failure_rate else "succeeded"
            made.append(
                self.create_charge(
                    name, account.ctx.minor(cents), account.ctx.currency, status=status
                )
            )
        return made

    def refund_charge(
        self, name: str, charge_id: str, amount: int | None = None, reason: str | None = None
    ) -> Obj:
        """Refund all or part of a charge: a refund, its balance transaction, the charge updated;
        emits charge.refunded and refund.created."""
        with self.lock:
            account = self._account(name)
            charges = account.tables["charges"]
            refunds = account.tables["refunds"]
            txns = account.tables["balance_transactions"]
            index = self._row(charges, charge_id)
            charge = self._copy(charges.get(index))
            remaining = charge["amount"] - charge["amount_refunded"]
            if charge["status"] != "succeeded":
                raise ApiError(
                    400,
                    f"Charge {charge_id} has no successful payment to refund.",
                    code="charge_not_refundable",
                )
            if remaining <= 0:
                raise ApiError(
                    400,
                    f"Charge {charge_id} has already been refunded.",
                    code="charge_already_refunded",
                )
            amount = remaining if amount is None else int(amount)
            if amount <= 0:
                raise ApiError(
                    400, "Amount must be at least 1.", code="amount_too_small", param="amount"
                )
            if amount > remaining:
                raise ApiError(
                    400,
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                    f"({remaining})",
                    code="amount_too_large",
                    param="amount",
                )
            now = self.clock()
            r, t = refunds.next_index(), txns.next_index()
            refund = account.payment_views.refund_obj(
                r,
                created=now,
                amount=amount,
                charge_id=charge_id,
                payment_intent=charge["payment_intent"],
                customer=charge["customer"],
                reason=reason,
                txn_id=txns.id_of(t),
                currency=charge["currency"],
            )
            refunds.append(refund)
            txns.append(
                account.payment_views.txn_obj(
                    t,
                    created=now,
                    kind=REFUND,
                    amount=-amount,
                    fee=0,
                    available_on=now,
                    source=refund["id"],
                    description=f"REFUND FOR CHARGE ({charge_id})",
                    currency=charge["currency"],
                )
            )
            previous = {
                "amount_refunded": charge["amount_refunded"],
                "refunded": charge["refunded"],
            }
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            charge["refunds"]["data"].insert(0, refund)
            charge["refunds"]["total_count"] = len(charge["refunds"]["data"])
            charges.replace(index, charge)
            self._emit(account, "charge.refunded", charge, previous)
            self._emit(account, "refund.created", refund)
            return refund

    # --- customers -------------------------------------------------------------------------------
    def create_customer(self, name: str, **fields: object) -> Obj:
        with self.lock:
            account = self._account(name)
            customers = account.tables["customers"]
            index = customers.next_index()
            obj = self._copy(account.billing_views.customer(0))
            obj.update(
                id=customers.id_of(index),
                created=self.clock(),
                email=None,
                name=None,
                delinquent=False,
                metadata={},
                invoice_prefix=customers.id_of(index)[-8:].upper(),
            )
            self._apply_customer_fields(obj, fields)
            customers.append(obj)
            self._emit(account, "customer.created", obj)
            return obj

    def update_customer(self, name: str, cus_id: str, **fields: object) -> Obj:
        """Change customer fields (metadata is merged); emits customer.updated."""
        with self.lock:
            account = self._account(name)
            customers = account.tables["customers"]
            index = self._row(customers, cus_id)
            obj = self._copy(customers.get(index))
            previous = {key: copy.deepcopy(obj.get(key)) for key in fields}
            self._apply_customer_fields(obj, fields)
            customers.replace(index, obj)
            self._emit(account, "customer.updated", obj, previous)
            return obj

    @staticmethod
    def _apply_customer_fields(obj: Obj, fields: dict[str, object]) -> None:
        unknown = set(fields) - _CUSTOMER_FIELDS
        if unknown:
            param = sorted(unknown)[0]
            raise ApiError(
                400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param
            )
        for key, value in fields.items():
            if key == "metadata" and isinstance(value, dict):
                merged = dict(obj.get("metadata") or {})
                for meta_key, meta_value in value.items():
                    if meta_value in (None, ""):
                        merged.pop(meta_key, None)
                    else:
                        merged[meta_key] = meta_value
                obj["metadata"] = merged
            else:
                obj[key] = value

    def delete_customer(self, name: str, cus_id: str) -> Obj:
        """Delete a customer: lists omit it, retrieve says deleted; emits customer.deleted."""
        with self.lock:
            account = self._account(name)
            customers = account.tables["customers"]
            index = self._row(customers, cus_id)
            obj = self._copy(customers.get(index))
            customers.deleted.add(index)
            self._emit(account, "customer.deleted", obj)
            return {"id": cus_id, "object": "customer", "deleted": True}

    # --- subscriptions ---------------------------------------------------------------------------
    def cancel_subscription(self, name: str, sub_id: str, at_period_end: bool = False) -> Obj:
        """Cancel now (customer.subscription.deleted) or at period end (….updated)."""
        if at_period_end:
            return self.set_cancel_at_period_end(name, sub_id, True)
        with self.lock:
            account = self._account(name)
            subs = account.tables["subscriptions"]
            index = self._row(subs, sub_id)
            obj = self._copy(subs.get(index))
            if obj["status"] == "canceled":
                raise ApiError(
                    400,
                    f"The subscription {sub_id} has already been canceled.",
                    code="subscription_canceled",
                )
            now = self.clock()
            obj.update(
                status="canceled",
                canceled_at=now,
                ended_at=now,
                cancel_at=None,
                cancel_at_period_end=False,
                cancellation_details={
                    "comment": None,
                    "feedback": None,
                    "reason": "cancellation_requested",
                },
            )
            subs.replace(index, obj)
            self._emit(account, "customer.subscription.deleted", obj)
            return obj

    def set_cancel_at_period_end(self, name: str, sub_id: str, flag: bool) -> Obj:
        """Schedule (or undo) cancellation at the end of the period; emits ….updated."""
        with self.lock:
            account = self._account(name)
            subs = account.tables["subscriptions"]
            index = self._row(subs, sub_id)
            obj = self._copy(subs.get(index))
            if obj["status"] == "canceled":
                raise ApiError(
                    400,
                    "A canceled subscription can only update its "
                    "cancellation_details and metadata.",
                    code="subscription_canceled",
                )
            previous = {
                key: obj.get(key) for key in ("cancel_at_period_end", "cancel_at", "canceled_at")
            }
            if flag:
                period_end = (
                    obj["items"]["data"][0]["current_period_end"] if obj["items"]["data"] else None
                )
                obj.update(
                    cancel_at_period_end=True,
                    cancel_at=period_end,
                    canceled_at=self.clock(),
                    cancellation_details={
                        "comment": None,
                        "feedback": None,
                        "reason": "cancellation_requested",
                    },
                )
            else:
                obj.update(
                    cancel_at_period_end=False,
                    cancel_at=None,
                    canceled_at=None,
                    cancellation_details={"comment": None, "feedback": None, "reason": None},
                )
            subs.replace(index, obj)
            self._emit(account, "customer.subscription.updated", obj, previous)
            return obj

    # --- any stream: the generic changes a test makes on streams without their own method ---
    def create_object(self, name: str, table: str, event_type: str, /,
                      **fields: object) -> Obj:
        """A new object shaped like the table's newest one, with `fields` over it, created
        now; emits `event_type` (e.g. `product.created`). Nested lists with ids (a
        subscription's items, an invoice's lines) get ids of their own."""
        with self.lock:
            account = self._account(name)
            rows = account.tables[table]
            if not len(rows):
                raise ValueError(f"{table} has no object to shape a new one on")
            index = rows.next_index()
            obj = self._copy(rows.get(len(rows) - 1))
            obj.update(id=rows.id_of(index), created=self.clock(), **fields)
            for nested in obj.values():
                if isinstance(nested, dict) and isinstance(nested.get("data"), list):
                    for position, item in enumerate(nested["data"]):
                        if isinstance(item, dict) and "id" in item:
                            item["id"] = f"{item['id'][:3]}{obj['id'][-10:]}x{position}"
            rows.append(obj)
            self._emit(account, event_type, obj)
            return obj

    def change_object(self, name: str, table: str, object_id: str, event_type: str, /,
                      **fields: object) -> Obj:
        """Set `fields` on an existing object; emits `event_type` (e.g. `price.updated`)."""
        with self.lock:
            account = self._account(name)
            rows = account.tables[table]
            index = self._row(rows, object_id)
            obj = self._copy(rows.get(index))
            previous = {key: copy.deepcopy(obj.get(key)) for key in fields}
            obj.update(fields)
            rows.replace(index, obj)
            self._emit(account, event_type, obj, previous)
            return obj

    def delete_object(self, name: str, table: str, object_id: str, event_type: str) -> Obj:
        """Delete an object (lists omit it from now on); emits `event_type`."""
        with self.lock:
            account = self._account(name)
            rows = account.tables[table]
            index = self._row(rows, object_id)
            rows.deleted.add(index)
            self._emit(account, event_type, self._copy(rows.get(index)))
            return {"id": object_id, "object": rows.object_name, "deleted": True}
