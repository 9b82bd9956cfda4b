"""A sync's chunks end at a byte budget as well as at an object count (issue 21).

Large objects (invoices with their lines) made 5,000-object chunks of ~150 MB of JSON, and a
first sync peaked at 1.3 GB. Here the budget is set far below a page: every page must then
be written as a chunk of its own, its cursor with it, and every object land once.
"""

from __future__ import annotations

import engine.file_warehouse
import engine.sync
from engine.streams import resolve_streams
from engine.sync import sync_client
from sandbox import AccountSpec
from tests.sync_helpers import (
    account_for,
    compare_with_source,
    duplicate_count,
    new_warehouse,
    run_sync,
)

ACCOUNT = AccountSpec("chunky", charges=600, customers=20, subscriptions=5)
PAGES = 6  # 600 charges, 100 a page, one request at a time


def _chunks(server, warehouse) -> tuple[int, int]:
    """How many chunks the charges listing wrote (progress is told at each), rows landed."""
    told: list[int] = []
    report = sync_client(account_for(server, "chunky"), warehouse, resolve_streams(["charges"]),
                         include_balance=False, concurrency=1,
                         progress=lambda *args: told.append(args[2]))
    # The last call is the stream's own summary, after the final chunk.
    return len(told) - 1, report.streams["charges"].inserted


def test_a_chunk_closes_at_the_byte_budget(sandbox_factory, tmp_path, monkeypatch):
    server = sandbox_factory([ACCOUNT], seed=9)
    small = new_warehouse(tmp_path / "small")
    default = new_warehouse(tmp_path / "default")
    small.ensure_schema()
    default.ensure_schema()

    default_chunks, default_landed = _chunks(server, default)
    monkeypatch.setattr(engine.sync, "CHUNK_BYTES", 64 * 1024)  # a page is ~250 KB
    chunks, landed = _chunks(server, small)

    # Each page passes the budget: a chunk each (the last one goes with the final commit).
    assert chunks >= PAGES - 1, chunks
    assert default_chunks == 0  # 600 charges stay far under 5,000 objects and 8 MB
    assert landed == default_landed == 600
    assert duplicate_count(small, "charges") == 0


WIDE = AccountSpec("wide", charges=400, customers=40, subscriptions=30, items_per_subscription=60)


def test_subscriptions_and_invoices_with_sixty_lines_land_whole_under_a_tiny_memory_target(
        sandbox_factory, tmp_path, monkeypatch):
    # A commit that ran out of its target at "failed to pin block" failed the sync instead of
    # running again with more memory.
    monkeypatch.setitem(engine.file_warehouse.FILE_WRITER_CONFIG, "memory_limit", "4MB")
    server = sandbox_factory([WIDE], seed=6)
    warehouse = new_warehouse(tmp_path)

    report = run_sync(server, "wide", warehouse)

    assert not report.errors, report.errors
    assert compare_with_source(server, "wide", warehouse) == []
    with warehouse.reader() as conn:
        items = conn.execute("SELECT count(*) FROM stripe.subscription_items").fetchone()[0]
        lines = conn.execute(
            "SELECT min((SELECT count(*) FROM stripe.invoice_line_items l "
            "WHERE l.client_id = i.client_id AND l.invoice = i.id)) "
            "FROM stripe.invoices i").fetchone()[0]
    assert items == 60 * report.streams["subscriptions"].inserted
    assert lines == 60
