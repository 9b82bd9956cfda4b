"""List endpoints: limit, cursors, created ranges and filters over a Table, newest first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sandbox.errors import invalid_param, resource_missing
from sandbox.params import Params
from sandbox.tables import FilterSpec, Obj, Table

MAX_LIMIT = 100
DEFAULT_LIMIT = 10
_CREATED_OPS = ("gt", "gte", "lt", "lte")


@dataclass
class ListQuery:
    limit: int = DEFAULT_LIMIT
    starting_after: str | None = None
    ending_before: str | None = None
    lo_created: int | None = None  # inclusive
    hi_created: int | None = None  # inclusive
    masks: list[np.ndarray] = field(default_factory=list)
    tests: list[Callable[[Obj], bool]] = field(default_factory=list)


def parse_limit(params: Params) -> int:
    limit = params.integer("limit")
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_param("limit", "Invalid limit: must be between 1 and 100")
    return limit


def parse_created(params: Params) -> tuple[int | None, int | None]:
    """`created=<ts>` or `created[gt|gte|lt|lte]=<ts>` as an inclusive [lo, hi] range."""
    lo: int | None = None
    hi: int | None = None
    exact = params.integer("created")
    if exact is not None:
        lo = hi = exact
    for op in _CREATED_OPS:
        value = params.integer(f"created[{op}]")
        if value is None:
            continue
        if op == "gt":
            lo = max(lo, value + 1) if lo is not None else value + 1
        elif op == "gte":
            lo = max(lo, value) if lo is not None else value
        elif op == "lt":
            hi = min(hi, value - 1) if hi is not None else value - 1
        else:
            hi = min(hi, value) if hi is not None else value
    return lo, hi


def build_query(
    table: Table, params: Params, extra: list[tuple[FilterSpec, str]] | None = None
) -> ListQuery:
    """The list query for these parameters; `extra` adds filters the endpoint always applies."""
    lo, hi = parse_created(params)
    query = ListQuery(
        limit=parse_limit(params),
        starting_after=params.one("starting_after") or None,
        ending_before=params.one("ending_before") or None,
        lo_created=lo,
        hi_created=hi,
    )
    wanted = list(extra or [])
    for name, spec in table.filters.items():
        value = params.one(name)
        if value is not None and value != "":
            wanted.append((spec, value))
    for spec, value in wanted:
        if spec.base_mask is not None:
            query.masks.append(spec.base_mask(value))
        else:
            query.masks.append(_render_mask(table, spec.matches, value))
        query.tests.append(lambda obj, m=spec.matches, v=value: m(obj, v))
    return query


def _render_mask(table: Table, matches: Callable[[Obj, str], bool], value: str) -> np.ndarray:
    # Fallback for filters without a column: test every generated row once.
    return np.fromiter(
        (matches(table.base(i), value) for i in range(table.n_base)), dtype=bool, count=table.n_base
    )


def page_indices(
    table: Table, query: ListQuery, min_created: int | None = None
) -> tuple[list[int], bool]:
    """The indices of one page (newest first) and whether more rows lie beyond it."""
    lo = 0
    hi = len(table)
    lo_created = query.lo_created
    if min_created is not None:
        lo_created = max(lo_created, min_created) if lo_created is not None else min_created
    if lo_created is not None:
        lo = table.first_at_or_after(lo_created)
    if query.hi_created is not None:
        hi = min(hi, table.first_after(query.hi_created))
    descending = True
    if query.starting_after:
        hi = min(hi, _cursor(table, query.starting_after, "starting_after"))
    elif query.ending_before:
        lo = max(lo, _cursor(table, query.ending_before, "ending_before") + 1)
        descending = False
    mask = _combine(query.masks)
    picked: list[int] = []
    has_more = False
    for index in table.candidates(lo, hi, mask, descending):
        if index in table.deleted:
            continue
        # Generated rows were judged by the mask; changed and added rows by their dict.
        if query.tests and table.is_changed(index):
            obj = table.get(index)
            if not all(test(obj) for test in query.tests):
                continue
        if len(picked) == query.limit:
            has_more = True
            break
        picked.append(index)
    if not descending:
        picked.reverse()
    return picked, has_more


def _combine(masks: list[np.ndarray]) -> np.ndarray | None:
    if not masks:
        return None
    combined = masks[0]
    for extra in masks[1:]:
        combined = combined & extra
    return combined


def _cursor(table: Table, object_id: str, param: str) -> int:
    index = table.index_of(object_id)
    if index is None:
        raise resource_missing(table.object_name, object_id, param=param)
    return index


def render_list(
    table: Table,
    indices: list[int],
    has_more: bool,
    url: str,
    dump: Callable[[int], bytes] | None = None,
) -> bytes:
    items = b",".join(map(dump or table.dumps, indices))
    more = b"true" if has_more else b"false"
    head = b'{"object":"list","data":['
    return head + items + b'],"has_more":' + more + b',"url":"' + url.encode() + b'"}'
