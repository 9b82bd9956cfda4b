"""`expand[]=...`: replace an id by the object it names, as Stripe does (`data.customer`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.tables import Obj

Finder = Callable[[str], Obj | None]


def expand(obj: Obj, paths: list[str], find: Finder) -> Obj:
    """A copy of `obj` with every dotted path in `paths` expanded (unknown paths are ignored)."""
    for path in paths:
        obj = _expand_path(obj, path.split("."), find)
    return obj


def _expand_path(value: Any, parts: list[str], find: Finder) -> Any:
    if not parts:
        if isinstance(value, str):
            found = find(value)
            return found if found is not None else value
        return value
    if isinstance(value, list):
        return [_expand_path(item, parts, find) for item in value]
    if not isinstance(value, dict) or parts[0] not in value:
        return value
    copy = dict(value)
    copy[parts[0]] = _expand_path(value[parts[0]], parts[1:], find)
    return copy
