"""Products, prices and coupons: the small catalog every other object refers to."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sandbox.context import DAY, Ctx
from sandbox.tables import Obj, Table, field_filter
from sandbox.templates import template

_PRODUCT_NAMES = [
    "Starter",
    "Growth",
    "Pro",
    "Business",
    "Enterprise",
    "Extra seats",
    "Priority support",
    "Analytics add-on",
    "API access",
    "Onboarding package",
    "Storage pack",
    "White label",
]
_MONTHLY_CENTS = [900, 1900, 2900, 4900, 9900, 19900, 49900]
# interval name -> (Stripe interval, interval_count, price relative to one month)
_INTERVALS = {
    "day": ("day", 1, 1 / 30),
    "week": ("week", 1, 0.25),
    "month": ("month", 1, 1.0),
    "quarter": ("month", 3, 2.85),
    "year": ("year", 1, 10.0),
}


@dataclass
class Catalog:
    products: list[Obj]
    prices: list[Obj]
    recurring: list[int]  # indices of recurring prices
    coupons: list[Obj]


def build_catalog(ctx: Ctx) -> Catalog:
    rng = ctx.prng
    n_products = max(1, ctx.spec.products)
    offsets = sorted(
        rng.randint(0, max(1, ctx.spec.history_days // 10) * DAY) for _ in range(n_products)
    )
    intervals = [name for name in ctx.spec.price_intervals if name in _INTERVALS] or ["month"]
    products: list[Obj] = []
    prices: list[Obj] = []
    recurring: list[int] = []
    for p in range(n_products):
        created = ctx.start + offsets[p]
        product = _product(ctx, p, created)
        products.append(product)
        monthly = rng.choice(_MONTHLY_CENTS)
        kinds = [intervals[p % len(intervals)]]
        if rng.random() < 0.4 and len(intervals) > 1:
            kinds.append(rng.choice(intervals))
        for j, kind in enumerate(kinds):
            recurring.append(len(prices))
            prices.append(
                _price(ctx, len(prices), product["id"], created + 60 * (j + 1), monthly, kind)
            )
        if rng.random() < 0.3:
            prices.append(_price(ctx, len(prices), product["id"], created + 600, monthly * 3, None))
        product["default_price"] = prices[recurring[-len(kinds)]]["id"]
    prices.sort(key=lambda price: price["created"])
    _renumber(ctx, prices, products)
    recurring = [i for i, price in enumerate(prices) if price["type"] == "recurring"]
    return Catalog(products, prices, recurring, _coupons(ctx))


def _renumber(ctx: Ctx, prices: list[Obj], products: list[Obj]) -> None:
    # Ids encode the row index, so give prices their ids after sorting by created.
    codec = ctx.codec("price_")
    renamed = {}
    for i, price in enumerate(prices):
        renamed[price["id"]] = codec.make(i)
        price["id"] = renamed[price["id"]]
    for product in products:
        product["default_price"] = renamed[product["default_price"]]


def _product(ctx: Ctx, index: int, created: int) -> Obj:
    obj = template("product")
    name = _PRODUCT_NAMES[index % len(_PRODUCT_NAMES)]
    if index >= len(_PRODUCT_NAMES):
        name = f"{name} {index // len(_PRODUCT_NAMES) + 1}"
    obj.update(
        id=ctx.codec("prod_").make(index),
        created=created,
        updated=created,
        name=name,
        description=f"{name} plan",
        livemode=ctx.livemode,
        active=True,
    )
    return obj


def _price(
    ctx: Ctx, index: int, product_id: str, created: int, monthly: int, kind: str | None
) -> Obj:
    obj = template("price")
    obj.update(
        id=f"tmp_{index}",
        created=created,
        currency=ctx.currency,
        livemode=ctx.livemode,
        product=product_id,
    )
    if kind is None:
        amount = ctx.minor(monthly)
        obj.update(type="one_time", recurring=None, nickname="One-time setup")
    else:
        interval, count, factor = _INTERVALS[kind]
        amount = ctx.minor(monthly * factor)
        obj["recurring"] = {**obj["recurring"], "interval": interval, "interval_count": count}
        obj["nickname"] = {"quarter": "Quarterly"}.get(kind, kind.capitalize() + "ly")
        if kind == "day":
            obj["nickname"] = "Daily"
    obj.update(unit_amount=amount, unit_amount_decimal=str(amount))
    return obj


def _coupons(ctx: Ctx) -> list[Obj]:
    coupons = []
    offers = [
        ("percent_off", 20.0),
        ("percent_off", 50.0),
        ("amount_off", 500),
        ("percent_off", 10.0),
    ]
    for i, (kind, value) in enumerate(offers):
        obj = template("coupon")
        obj.update(
            id=ctx.codec("co_").make(i),  # any string; ours say their row (list cursors)
            created=ctx.start,
            livemode=ctx.livemode,
            duration="forever",
            percent_off=None,
            amount_off=None,
            currency=None,
            times_redeemed=0,
        )
        if kind == "percent_off":
            obj.update(percent_off=value, name=f"{value:g}% off forever")
        else:
            amount = ctx.minor(value)
            obj.update(amount_off=amount, currency=ctx.currency, name=f"{amount} off forever")
        coupons.append(obj)
    return coupons


def plan_of(price: Obj) -> Obj:
    """The legacy `plan` mirror of a recurring price, as subscription items still carry it."""
    obj = template("plan")
    recurring = price.get("recurring") or {}
    obj.update(
        id=price["id"],
        created=price["created"],
        currency=price["currency"],
        amount=price["unit_amount"],
        amount_decimal=price["unit_amount_decimal"],
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count"),
        livemode=price["livemode"],
        product=price["product"],
        nickname=price["nickname"],
    )
    return obj


def catalog_tables(ctx: Ctx, catalog: Catalog) -> dict[str, Table]:
    products, prices = catalog.products, catalog.prices
    return {
        "products": Table(
            "products",
            "product",
            ctx.codec("prod_"),
            np.array([p["created"] for p in products], dtype=np.int64),
            products.__getitem__,
            {"active": field_filter("active")},
        ),
        "prices": Table(
            "prices",
            "price",
            ctx.codec("price_"),
            np.array([p["created"] for p in prices], dtype=np.int64),
            prices.__getitem__,
            {
                "product": field_filter("product"),
                "type": field_filter("type"),
                "currency": field_filter("currency"),
            },
        ),
    }
