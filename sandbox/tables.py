"""One resource of one account: generated rows rendered on demand, plus later changes.

Rows are ordered by index, and `created` never decreases with the index, so "newest first"
is "highest index first" and a `created` range is an index range found by bisection.
Generated rows live as numpy columns and are rendered to dicts only when asked for; rows
added or changed after generation live as plain dicts (`extra`, `overrides`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from sandbox.ids import IdCodec

Obj = dict[str, Any]


@dataclass(frozen=True)
class FilterSpec:
    """A list filter (`?customer=cus_...`): a fast mask over generated rows and a dict test."""

    matches: Callable[[Obj, str], bool]
    base_mask: Callable[[str], np.ndarray] | None = None


def as_text(value: Any) -> str:
    """A field value the way it appears in a query string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def field_filter(field: str, column: Callable[[str], np.ndarray] | None = None) -> FilterSpec:
    return FilterSpec(matches=lambda obj, value: as_text(obj.get(field)) == value, base_mask=column)


class Table:
    def __init__(
        self,
        path: str,
        object_name: str,
        codec: IdCodec,
        created: np.ndarray,
        render_base: Callable[[int], Obj],
        filters: dict[str, FilterSpec] | None = None,
    ) -> None:
        self.path = path
        self.object_name = object_name
        self.codec = codec
        self.base_created = np.asarray(created, dtype=np.int64)
        self.n_base = len(self.base_created)
        self._render_base = render_base
        self.extra: list[Obj] = []
        self.extra_created: list[int] = []
        self.overrides: dict[int, Obj] = {}
        self.deleted: set[int] = set()
        self.filters: dict[str, FilterSpec] = filters or {}

    # --- rows ---------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_base + len(self.extra)

    def id_of(self, index: int) -> str:
        return self.codec.make(index)

    def index_of(self, object_id: str) -> int | None:
        """The index of an existing row (deleted rows included), or None."""
        index = self.codec.index_of(object_id)
        if index is None or index >= len(self):
            return None
        return index

    def created_at(self, index: int) -> int:
        if index < self.n_base:
            return int(self.base_created[index])
        return self.extra_created[index - self.n_base]

    def last_created(self) -> int:
        if self.extra_created:
            return self.extra_created[-1]
        return int(self.base_created[-1]) if self.n_base else 0

    def base(self, index: int) -> Obj:
        """The row as generated (mutations ignored): what historical events show."""
        if index < self.n_base:
            return self._render_base(index)
        return self.extra[index - self.n_base]

    def get(self, index: int) -> Obj:
        """The row as it is now. Callers must not mutate the result."""
        override = self.overrides.get(index)
        if override is not None:
            return override
        if index < self.n_base:
            return self._render_base(index)
        return self.extra[index - self.n_base]

    def dumps(self, index: int) -> bytes:
        return orjson.dumps(self.get(index))

    def append(self, obj: Obj) -> int:
        """Add a row created now; `obj["created"]` is clamped so order stays monotonic."""
        obj["created"] = max(int(obj["created"]), self.last_created())
        # `created` first: readers size the table by `extra`, so they never see a row
        # without its timestamp.
        self.extra_created.append(obj["created"])
        self.extra.append(obj)
        return len(self) - 1

    def next_index(self) -> int:
        return len(self)

    def replace(self, index: int, obj: Obj) -> None:
        if index < self.n_base:
            self.overrides[index] = obj
        else:
            self.extra[index - self.n_base] = obj

    def is_changed(self, index: int) -> bool:
        return index in self.overrides or index >= self.n_base

    # --- ranges -------------------------------------------------------------
    def first_at_or_after(self, ts: int) -> int:
        """Smallest index whose created >= ts."""
        pos = int(np.searchsorted(self.base_created, ts, side="left"))
        if pos < self.n_base:
            return pos
        return self.n_base + bisect.bisect_left(self.extra_created, ts)

    def first_after(self, ts: int) -> int:
        """Smallest index whose created > ts."""
        pos = int(np.searchsorted(self.base_created, ts, side="right"))
        if pos < self.n_base:
            return pos
        return self.n_base + bisect.bisect_right(self.extra_created, ts)

    def candidates(
        self, lo: int, hi: int, mask: np.ndarray | None, descending: bool
    ) -> Iterator[int]:
        """Indices in [lo, hi) worth testing: generated rows that pass `mask`, changed rows and
        added rows always (their current dict is tested instead)."""
        if lo >= hi:
            return iter(())
        split = min(max(lo, self.n_base), hi)  # [lo, split) generated, [split, hi) added
        added = range(split, hi)
        if mask is None:
            base: Any = range(lo, split)
        else:
            base = np.flatnonzero(mask[lo:split]) + lo
            changed = [i for i in list(self.overrides) if lo <= i < split]  # list(): atomic copy
            if changed:
                base = np.union1d(base, np.asarray(changed, dtype=np.int64))
            base = base.tolist()
        if descending:
            return _chain(reversed(added), reversed(base))
        return _chain(base, added)


def _chain(first: Any, second: Any) -> Iterator[int]:
    yield from first
    yield from second
