"""A page of Stripe objects becomes an Arrow batch: ids, the raw JSON and bookkeeping.

Typed columns are not built here, one Python value at a time: the load step asks
DuckDB to extract them from `raw` with SQL generated from the stream's column specs
(resources/warehouse.py, `typed_select`). JSON parsing then runs in DuckDB's C++
threads instead of holding the GIL, which is what keeps a sync CPU-cheap.
"""

from __future__ import annotations

from datetime import datetime

import orjson
import pyarrow as pa

RAW_BATCH_SCHEMA = pa.schema([
    ("client_id", pa.string()),
    ("id", pa.string()),
    ("is_deleted", pa.bool_()),
    ("raw", pa.string()),
    ("_synced_at", pa.timestamp("us", tz="UTC")),
])


def to_arrow(
    client_id: str,
    objects: list[dict],
    synced_at: datetime,
    deleted_ids: frozenset[str] = frozenset(),
) -> pa.Table:
    """One row per object: (client_id, id, is_deleted, raw, _synced_at)."""
    count = len(objects)
    return pa.Table.from_arrays(
        [
            pa.array([client_id] * count, pa.string()),
            pa.array([o["id"] for o in objects], pa.string()),
            pa.array([bool(o.get("deleted")) or o["id"] in deleted_ids for o in objects],
                     pa.bool_()),
            pa.array([orjson.dumps(o).decode() for o in objects], pa.string()),
            pa.array([synced_at] * count, pa.timestamp("us", tz="UTC")),
        ],
        schema=RAW_BATCH_SCHEMA,
    )
