"""Lists that a Stripe object embeds only in part, completed before the object lands, and
lists kept apart from their parent's `raw`.

A subscription embeds its first 10 items and an invoice its first lines; when there are
more, the embedded list says `has_more` and the rest must be paged from the list's own
endpoint (ChildSpec.more_endpoint). The parent's `raw` then carries the whole list,
`has_more` false, so its child table (replaced whole from `raw` by the warehouse) gets
every item, on the listing path and the events path alike.

A list kept apart (ChildSpec.in_parent_raw false: an invoice's lines) is cut out of the
parent's JSON here, once complete: the batch handed to the warehouse carries the parent's
`raw` without the items, and the items (each one's JSON text) in a column of their own
(`batch_of_raw`, `batch_of_objects`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import orjson
import pyarrow as pa

from engine.failures import StripeAccessError
from engine.raw_rows import objects_to_arrow, to_arrow
from engine.streams import ChildSpec, StreamSpec
from engine.stripe_api import PAGE_SIZE, StripeAccount

# The parent's id in a batch with lists kept apart: the items' rows point at it.
PARENT_COLUMN = "_parent"
ITEMS_TYPE = pa.list_(pa.string())

# How an embedded list says it is cut short: Stripe indents its JSON, the sandbox does not.
# A cheap test on the text: only objects that pass it are decoded.
_MORE_MARKERS = (b'"has_more":true', b'"has_more": true')


def pageable(spec: StreamSpec) -> tuple[ChildSpec, ...]:
    return tuple(child for child in spec.children if child.more_endpoint)


def complete_raw(account: StripeAccount, spec: StreamSpec,
                 raw_objects: list[bytes]) -> list[bytes]:
    """The objects' JSON texts, each with its pageable lists complete."""
    children = pageable(spec)
    if not children:
        return raw_objects
    completed = raw_objects
    for position, raw in enumerate(raw_objects):
        if not any(marker in raw for marker in _MORE_MARKERS):
            continue
        obj = orjson.loads(raw)
        if complete_object(account, children, obj):
            if completed is raw_objects:
                completed = list(raw_objects)
            completed[position] = orjson.dumps(obj)
    return completed


def complete_objects(account: StripeAccount, spec: StreamSpec, objects: Iterable[dict],
                     skip_ids: frozenset[str] = frozenset()) -> None:
    """Complete decoded objects (from events) in place; deleted ones (`skip_ids`) have no
    list left to page."""
    children = pageable(spec)
    if not children:
        return
    for obj in objects:
        if obj.get("id") not in skip_ids and not obj.get("deleted"):
            complete_object(account, children, obj)


def complete_object(account: StripeAccount, children: tuple[ChildSpec, ...], obj: dict) -> bool:
    """Page each cut-short list of `obj` to its end, in place; whether any changed."""
    changed = False
    for child in children:
        holder = _dig(obj, child.path[:-1])
        if not isinstance(holder, dict) or not holder.get("has_more"):
            continue
        items = list(holder.get(child.path[-1]) or [])
        rest = _rest_of(account, child, obj["id"], items[-1]["id"] if items else None)
        if rest is None:
            continue
        known = {item.get("id") for item in items}
        items += [item for item in rest if item.get("id") not in known]
        holder[child.path[-1]] = items
        holder["has_more"] = False
        changed = True
    return changed


def _rest_of(account: StripeAccount, child: ChildSpec, parent_id: str,
             after: str | None) -> list[dict] | None:
    """The items after `after`, every page of them; None if the parent is gone from Stripe
    (deleted since it was listed: its row is flagged by the events that say so)."""
    path = child.more_endpoint.format(id=parent_id)
    query: dict[str, object] = {"limit": PAGE_SIZE, **{
        name: value.format(id=parent_id) for name, value in child.more_params.items()}}
    rest: list[dict] = []
    while True:
        if after:
            query["starting_after"] = after
        try:
            page = account.get_page(path, query)
        except StripeAccessError as error:
            if error.http_status == 404:
                return None
            raise
        rest += [orjson.loads(raw) for raw in page.raw_objects]
        if not page.has_more or not page.raw_objects:
            return rest
        after = page.last_id


def kept_apart(spec: StreamSpec) -> tuple[ChildSpec, ...]:
    return tuple(child for child in spec.children if not child.in_parent_raw)


def batch_of_raw(client_id: str, spec: StreamSpec, raw_objects: Sequence[bytes],
                 synced_at: datetime) -> pa.Table:
    """Listed objects (complete) as the batch `merge_rows` takes."""
    children = kept_apart(spec)
    if not children:
        return to_arrow(client_id, raw_objects, synced_at)
    # Decoded one at a time: a page of invoices with their lines is ~7 MB of JSON.
    return _batch(client_id, children, (orjson.loads(raw) for raw in raw_objects), synced_at)


def batch_of_objects(client_id: str, spec: StreamSpec, objects: list[dict],
                     synced_at: datetime, deleted_ids: frozenset[str] = frozenset()
                     ) -> pa.Table:
    """Decoded objects (from events, complete) as the same batch; flagged if deleted."""
    children = kept_apart(spec)
    if not children:
        return objects_to_arrow(client_id, objects, synced_at, deleted_ids)
    deleted = [bool(obj.get("deleted")) or obj["id"] in deleted_ids for obj in objects]
    return _batch(client_id, children, objects, synced_at, deleted)


def _batch(client_id: str, children: tuple[ChildSpec, ...], objects: Iterable[dict],
           synced_at: datetime, deleted: list[bool] | None = None) -> pa.Table:
    texts: list[bytes] = []
    parents: list[str | None] = []
    items: dict[str, list[list[bytes]]] = {child.table: [] for child in children}
    for obj in objects:
        for child in children:
            obj, cut = _cut(obj, child.path)
            items[child.table].append(cut)
        parents.append(obj.get("id"))
        texts.append(orjson.dumps(obj))
    table = to_arrow(client_id, texts, synced_at, deleted)
    table = table.append_column(PARENT_COLUMN, pa.array(parents, pa.string()))
    for child in children:
        table = table.append_column(child.items_column, pa.array(items[child.table], ITEMS_TYPE))
    return table


def _cut(obj: dict, path: tuple[str, ...]) -> tuple[dict, list[bytes]]:
    """`obj` without the items of the list at `path` (a copy: the caller's stays whole),
    and the items' JSON texts. The list keeps its other fields; `has_more` says the items
    go on elsewhere (in the child table) whenever there were any."""
    *to_holder, key = path
    top = dict(obj)
    holder: dict = top
    for name in to_holder:
        inner = holder.get(name)
        if not isinstance(inner, dict):
            return obj, []
        holder[name] = holder = dict(inner)
    found = holder.get(key)
    cut = list(found) if isinstance(found, list) else []
    if key in holder:
        holder[key] = []
    if cut:
        holder["has_more"] = True
    return top, [orjson.dumps(item) for item in cut]


def _dig(obj: dict, path: tuple[str, ...]) -> object:
    value: object = obj
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
