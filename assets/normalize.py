"""A page of Stripe objects becomes an Arrow table: the stream's typed columns plus `raw`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from assets.streams import ChildSpec, Column

ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMPTZ": pa.timestamp("s", tz="UTC"),
    "JSON": pa.string(),
}


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return None
    return str(value)


def _as_json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


_COERCE: dict[str, Callable[[Any], Any]] = {
    "VARCHAR": _as_str,
    "BIGINT": _as_int,
    "DOUBLE": _as_float,
    "BOOLEAN": _as_bool,
    "TIMESTAMPTZ": _as_int,  # epoch seconds; Arrow makes them timestamps
    "JSON": _as_json,
}


def _values(column: Column, objects: list[dict]) -> list[Any]:
    path, coerce = column.source_path, _COERCE[column.type]
    if column.ref:
        raw = [_dig(o, path) for o in objects]
        return [v.get("id") if isinstance(v, dict) else _as_str(v) for v in raw]
    if len(path) == 1:
        key = path[0]
        return [coerce(o.get(key)) for o in objects]
    return [coerce(_dig(o, path)) for o in objects]


def to_arrow(
    columns: Iterable[Column],
    client_id: str,
    objects: list[dict],
    synced_at: datetime,
    deleted_ids: frozenset[str] = frozenset(),
    extra: dict[str, list[Any]] | None = None,
) -> pa.Table:
    """Typed columns, bookkeeping (client_id, is_deleted, _synced_at) and the raw JSON."""
    arrays: dict[str, pa.Array] = {
        "client_id": pa.array([client_id] * len(objects), pa.string()),
    }
    for name, values in (extra or {}).items():
        arrays[name] = pa.array(values, pa.string())
    for column in columns:
        arrays[column.name] = pa.array(_values(column, objects), ARROW_TYPES[column.type])
    arrays["is_deleted"] = pa.array(
        [bool(o.get("deleted")) or o.get("id") in deleted_ids for o in objects], pa.bool_()
    )
    arrays["raw"] = pa.array([orjson.dumps(o).decode() for o in objects], pa.string())
    arrays["_synced_at"] = pa.array([synced_at] * len(objects), pa.timestamp("us", tz="UTC"))
    return pa.table(arrays)


def children_to_arrow(
    child: ChildSpec, client_id: str, parents: list[dict], synced_at: datetime
) -> pa.Table:
    """The child list of every parent (subscription items), each row tied to its parent."""
    rows: list[dict] = []
    parent_ids: list[str] = []
    for parent in parents:
        for item in _dig(parent, child.path) or []:
            rows.append(item)
            parent_ids.append(parent["id"])
    return to_arrow(
        child.columns, client_id, rows, synced_at, extra={child.parent_column: parent_ids}
    )
