"""A sync's chunks end at a byte budget as well as at an object count (issue 21).

Large objects (invoices with their lines) made 5,000-object chunks of ~150 MB of JSON, and a
first sync peaked at 1.3 GB. Here the budget is set far below a page: every page must then
be written as a chunk of its own, its cursor with it, and every object land once.
"""

from __future__ import annotations

from engine.streams import resolve_streams
from engine.sync import sync_stream
from sandbox import AccountSpec
from tests.sync_helpers import account_for, duplicate_count, new_warehouse

ACCOUNT = AccountSpec("chunky", charges=600, customers=20, subscriptions=5)
PAGES = 6  # 600 charges, 100 a page, one request at a time


def _chunks(server, warehouse, **budget) -> tuple[int, int]:
    """How many chunks the charges listing wrote (progress is told at each), rows landed."""
    told: list[int] = []
    result = sync_stream(account_for(server, "chunky"), warehouse, resolve_streams(["charges"])[0],
                         concurrency=1, progress=lambda *args: told.append(args[2]),
                         **budget)
    # The last call is the stream's own summary, after the final chunk.
    return len(told) - 1, result.inserted


def test_a_chunk_closes_at_the_byte_budget(sandbox_factory, tmp_path):
    server = sandbox_factory([ACCOUNT], seed=9)
    small = new_warehouse(tmp_path / "small")
    default = new_warehouse(tmp_path / "default")
    small.ensure_schema()
    default.ensure_schema()

    chunks, landed = _chunks(server, small, chunk_bytes=64 * 1024)  # a page is ~250 KB
    default_chunks, default_landed = _chunks(server, default)

    # Each page passes the budget: a chunk each (the last one goes with the final commit).
    assert chunks >= PAGES - 1, chunks
    assert default_chunks == 0  # 600 charges stay far under 5,000 objects and 16 MB
    assert landed == default_landed == 600
    assert duplicate_count(small, "charges") == 0
