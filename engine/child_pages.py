"""Lists that a Stripe object embeds only in part, completed before the object lands.

A subscription embeds its first 10 items and an invoice its first lines; when there are
more, the embedded list says `has_more` and the rest must be paged from the list's own
endpoint (ChildSpec.more_endpoint). The parent's `raw` then carries the whole list,
`has_more` false, so its child table (replaced whole from `raw` by the warehouse) gets
every item, on the listing path and the events path alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from engine.failures import StripeAccessError
from engine.streams import ChildSpec, StreamSpec
from engine.stripe_api import PAGE_SIZE, StripeAccount

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


def _dig(obj: dict, path: tuple[str, ...]) -> object:
    value: object = obj
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
