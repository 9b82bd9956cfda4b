"""The one place that picks the warehouse's backend: a DuckDB file or a DuckLake catalog."""

from __future__ import annotations

import os
from pathlib import Path

from engine.file_warehouse import FileWarehouse
from engine.lake.target import is_lake_target
from engine.lake.warehouse import LakeWarehouse
from engine.settings import load_settings
from engine.warehouse import Warehouse


def open_warehouse(target: str | os.PathLike[str], lock_timeout: float = 900.0) -> Warehouse:
    """The warehouse `target` names: a `ducklake:` catalog, else a DuckDB file path.
    Nothing is opened yet; the first reader or writer does that."""
    if is_lake_target(target):
        return LakeWarehouse(os.fspath(target), lock_timeout=lock_timeout)
    return FileWarehouse(Path(target), lock_timeout=lock_timeout)


def warehouse_from_settings(lock_timeout: float = 900.0) -> Warehouse:
    """The warehouse STRIPE_REPORTS_WAREHOUSE names (the home folder's file by default)."""
    return open_warehouse(load_settings().warehouse, lock_timeout=lock_timeout)
