"""A writer's memory target never fails a sync (issue 12).

The file's writers run under a small DuckDB memory target to keep a sync's peak low. What
does not fit spills to disk; a transaction that still runs out of memory is rolled back and
runs again with a larger target. Here the target is far too small for one chunk: the sync
must still land every object of every stream, once, and equal the source.
"""

from __future__ import annotations

import engine.file_warehouse
from sandbox import AccountSpec
from tests.sync_helpers import compare_with_source, new_warehouse, run_sync

TIGHT = AccountSpec("tight", charges=6_000, customers=300, subscriptions=400)


def test_a_sync_under_a_tiny_memory_target_lands_every_object(sandbox_factory, tmp_path,
                                                              monkeypatch):
    monkeypatch.setitem(engine.file_warehouse.FILE_WRITER_CONFIG, "memory_limit", "4MB")
    server = sandbox_factory([TIGHT], seed=5)
    warehouse = new_warehouse(tmp_path)

    report = run_sync(server, "tight", warehouse)

    assert not report.errors, report.errors
    assert report.streams["charges"].inserted == 6_000
    assert compare_with_source(server, "tight", warehouse) == []


def test_the_reporting_build_under_a_tiny_memory_target_builds_every_table(
        sandbox_factory, tmp_path, monkeypatch):
    # The build's module is loaded with the reporting assets: imported where it is used.
    from engine.reporting.build import build_reporting_tables

    server = sandbox_factory([TIGHT], seed=5)
    warehouse = new_warehouse(tmp_path)
    assert not run_sync(server, "tight", warehouse).errors
    monkeypatch.setitem(engine.file_warehouse.FILE_WRITER_CONFIG, "memory_limit", "4MB")

    with warehouse.writer() as conn:
        result = build_reporting_tables(conn, "tight")

    assert result.rows["payments"] == 6_000
    assert result.rows["subscription_mrr"] > 0
