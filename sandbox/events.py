"""Events: generated ones for the last 30 days of history, and the ones mutations emit."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import numpy as np

from sandbox.context import DAY, Ctx
from sandbox.tables import FilterSpec, Obj, Table
from sandbox.templates import shared_template

RETENTION = 30 * DAY  # Stripe returns events of the last 30 days only

EVENT_TYPES = (
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "refund.created",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
    "payout.created",
    "payout.paid",
)
SOURCE_TABLES = ("charges", "refunds", "customers", "subscriptions", "invoices", "payouts")
_CODE = {name: i for i, name in enumerate(EVENT_TYPES)}


class EventLog:
    """Collects (created, type, source table, source row) for generated events."""

    def __init__(self, since: int) -> None:
        self.since = since
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, table: str, created, rows, types: np.ndarray | str) -> None:
        created = np.asarray(created, dtype=np.int64).reshape(-1)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        keep = created >= self.since
        if isinstance(types, str):
            codes = np.full(int(keep.sum()), _CODE[types], dtype=np.int8)
        else:
            codes = np.array([_CODE[t] for t in np.asarray(types)[keep]], dtype=np.int8)
        table_code = np.full(int(keep.sum()), SOURCE_TABLES.index(table), dtype=np.int8)
        self._parts.append((created[keep], codes, table_code, rows[keep]))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self._parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.astype(np.int8), empty.astype(np.int8), empty
        created, codes, tables, rows = (np.concatenate(c) for c in zip(*self._parts, strict=True))
        order = np.lexsort((np.arange(len(created)), created))
        return created[order], codes[order], tables[order], rows[order]


def event_obj(
    ctx: Ctx, event_id: str, created: int, type_: str, data: Obj, previous: Obj | None = None
) -> Obj:
    obj = dict(shared_template("event"))
    payload: Obj = {"object": data}
    if previous is not None:
        payload["previous_attributes"] = previous
    obj.update(
        id=event_id,
        created=created,
        type=type_,
        data=payload,
        livemode=ctx.livemode,
        pending_webhooks=0,
        request={"id": None, "idempotency_key": None},
    )
    if ctx.spec.connected_to:
        obj["account"] = ctx.account_id
    return obj


def type_matcher(patterns: str) -> Callable[[str], bool]:
    """`charge.*` style patterns, several joined by newlines (from `types[]`)."""
    wanted = [p for p in patterns.split("\n") if p]
    return lambda type_: any(fnmatch.fnmatchcase(type_, p) for p in wanted)


def events_table(ctx: Ctx, log: EventLog, tables: dict[str, Table]) -> Table:
    created, codes, table_codes, rows = log.columns()
    codec = ctx.codec("evt_")

    def render(e: int) -> Obj:
        source = tables[SOURCE_TABLES[int(table_codes[e])]]
        return event_obj(
            ctx,
            codec.make(e),
            int(created[e]),
            EVENT_TYPES[int(codes[e])],
            source.base(int(rows[e])),
        )

    def type_mask(patterns: str) -> np.ndarray:
        match = type_matcher(patterns)
        hits = [i for i, name in enumerate(EVENT_TYPES) if match(name)]
        return np.isin(codes, np.array(hits, dtype=np.int8))

    spec = FilterSpec(lambda obj, patterns: type_matcher(patterns)(obj["type"]), type_mask)
    return Table("events", "event", codec, created, render, {"type": spec})
