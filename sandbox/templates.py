"""Stripe's own example objects (fixtures3.json), cleaned into templates for generated objects.

Every field of the fixture stays present; fields whose example values would mislead a report
(placeholder transfers, quote parents, huge shipping costs) are reset to what an ordinary
object of this kind carries.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

# Values set on top of the raw fixture, per object kind.
_CLEANUPS: dict[str, dict[str, Any]] = {
    "account": {"charges_enabled": True, "payouts_enabled": True, "details_submitted": True},
    "charge": {
        "source": None,
        "transfer_data": None,
        "shipping": None,
        "captured": True,
        "calculated_statement_descriptor": "SANDBOX",
    },
    "customer": {"discount": None, "shipping": None, "invoice_prefix": None},
    "subscription": {
        "cancel_at": None,
        "canceled_at": None,
        "ended_at": None,
        "trial_end": None,
        "trial_start": None,
        "cancel_at_period_end": False,
        "billing_cycle_anchor_config": None,
        "next_pending_invoice_item_invoice": None,
        "pause_collection": None,
        "pending_invoice_item_interval": None,
        "pending_update": None,
        "transfer_data": None,
        "billing_schedules": [],
        "managed_payments": {"enabled": False},
    },
    "subscription_item": {"billing_thresholds": None},
    "invoice": {
        "from_invoice": None,
        "last_finalization_error": None,
        "shipping_cost": None,
        "shipping_details": None,
        "customer_shipping": None,
        "amount_overpaid": 0,
        "billing_reason": "subscription_cycle",
        "auto_advance": False,
        "next_payment_attempt": None,
        "webhooks_delivered_at": None,
    },
    "price": {"transform_quantity": None},
    "plan": {"transform_usage": None, "billing_scheme": "per_unit"},
    "product": {"package_dimensions": None, "type": "service", "description": None},
    "payout": {"trace_id": {"status": "supported", "value": None}},
    "balance_transaction": {},
    "refund": {},
    "coupon": {"redeem_by": None, "duration_in_months": None},
    "discount": {"end": None},
    "event": {"api_version": "2025-06-30.basil"},
}


@cache
def _fixtures() -> dict[str, Any]:
    text = resources.files("sandbox").joinpath("data/fixtures3.json").read_text()
    return json.loads(text)["resources"]


@cache
def _template(kind: str) -> dict[str, Any]:
    base = copy.deepcopy(_fixtures()[kind])
    base.update(copy.deepcopy(_CLEANUPS.get(kind, {})))
    return base


def template(kind: str) -> dict[str, Any]:
    """A fresh deep copy of the cleaned template of `kind` (safe to mutate)."""
    return copy.deepcopy(_template(kind))


def shared_template(kind: str) -> dict[str, Any]:
    """The cleaned template itself: callers copy the top level and must not mutate nested values."""
    return _template(kind)


def fixture(kind: str) -> dict[str, Any]:
    """The raw example object from Stripe's fixtures (a deep copy)."""
    return copy.deepcopy(_fixtures()[kind])
