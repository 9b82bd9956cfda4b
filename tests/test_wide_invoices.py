"""Invoices with many lines (issue 21): every line lands in stripe.invoice_line_items equal
to what Stripe lists, past the first page an invoice embeds too; the invoice's `raw` keeps
the list without them. The byte budgets that bound a sync's memory (pages waiting in the
pager, chunks waiting for a writer) never lose or duplicate a row, however small."""

from __future__ import annotations

import orjson

import engine.pager
import engine.sync
from engine.streams import STREAMS_BY_NAME
from sandbox import AccountSpec
from tests.sync_helpers import compare_with_source, new_warehouse, run_sync, source_objects
from tests.test_sync_sandbox import settle

INVOICES = STREAMS_BY_NAME["invoices"]
CHECKED = [STREAMS_BY_NAME[name] for name in ("subscriptions", "invoices", "charges")]


def _rows(warehouse, sql: str, *params) -> list[tuple]:
    with warehouse.reader() as conn:
        return conn.execute(sql, list(params)).fetchall()


def _long_invoice(server, name: str, lines: int) -> dict:
    customer = sorted(source_objects(server, name, STREAMS_BY_NAME["customers"]))[1]
    return server.world.create_invoice(
        name, customer, [(f"Consulting hour {k + 1}", 1000 + k) for k in range(lines)])


def test_lines_past_the_embedded_page_land_equal_to_the_source(sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=150, customers=20, subscriptions=10,
                                          items_per_subscription=15)])
    first = _long_invoice(server, "acme", 55)
    assert first["lines"]["has_more"] and len(first["lines"]["data"]) == 10
    settle()
    warehouse = new_warehouse(tmp_path)

    assert not run_sync(server, "acme", warehouse).errors
    # Every table equals the source: each line's JSON, under its invoice, and the
    # invoices' other fields; the invoice's raw keeps the list without its items.
    assert compare_with_source(server, "acme", warehouse, streams=CHECKED) == []
    lines = source_objects(server, "acme", INVOICES)[first["id"]]["lines"]["data"]
    assert len(lines) == 55
    assert _rows(warehouse, "SELECT count(*), sum(amount) FROM stripe.invoice_line_items "
                 "WHERE invoice = ?", first["id"]) == [(55, sum(1000 + k for k in range(55)))]
    (raw,) = _rows(warehouse, "SELECT raw FROM stripe.invoices WHERE id = ?", first["id"])[0]
    kept = orjson.loads(raw)["lines"]
    assert kept["data"] == [] and kept["has_more"] is True
    # A subscription's 15 items (10 embedded) land whole too.
    assert _rows(warehouse, "SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM "
                 "stripe.subscription_items GROUP BY subscription)") == [(15, 15)]

    # Created between two syncs (the events path), and a deleted draft's lines.
    second = _long_invoice(server, "acme", 31)
    draft = _long_invoice(server, "acme", 12)
    server.world.delete_invoice("acme", draft["id"])
    settle()
    assert not run_sync(server, "acme", warehouse).errors
    assert compare_with_source(server, "acme", warehouse, streams=CHECKED,
                               deleted=[draft["id"]]) == []
    assert _rows(warehouse, "SELECT count(DISTINCT id), count(*) FROM "
                 "stripe.invoice_line_items WHERE invoice = ?", second["id"]) == [(31, 31)]


def test_the_smallest_byte_budgets_still_land_every_row_once(sandbox_factory, tmp_path,
                                                             monkeypatch):
    """One page buffered or fetched at a time, one chunk waiting for a writer at a time."""
    server = sandbox_factory([AccountSpec("acme", charges=900, customers=60, subscriptions=40,
                                          items_per_subscription=12)])
    settle()
    monkeypatch.setattr(engine.pager, "MAX_BUFFERED_BYTES", 1)
    monkeypatch.setattr(engine.sync.PENDING_CHUNKS, "limit", 1)
    monkeypatch.setattr(engine.sync, "CHUNK_BYTES", 64 * 1024)
    warehouse = new_warehouse(tmp_path)

    report = run_sync(server, "acme", warehouse)

    assert not report.errors
    assert compare_with_source(server, "acme", warehouse) == []
    assert engine.sync.PENDING_CHUNKS.total == 0  # every chunk written gave its room back
