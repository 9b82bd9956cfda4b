"""`disconnect --purge` on the DuckDB file is final: the client's rows are gone from every
byte of the warehouse, not only from queries, and the other clients' rows are untouched.
(On DuckLake: tests/test_ducklake.py, test_purge_leaves_no_snapshot_...)"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.file_warehouse import FileWarehouse
from engine.reporting.build import build_reporting_tables
from engine.warehouse import Warehouse
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import run_widgets
from sandbox import AccountSpec
from tests.sync_helpers import run_sync
from tests.test_cli import SMALL, run_cli, save

MARKERS = 300
NOW = datetime.now(UTC)


def _markers(client: str) -> list[bytes]:
    """Values only this client's rows hold, high in entropy: findable in the file's bytes."""
    return [hashlib.sha256(f"{client}-{n}".encode()).hexdigest().encode()
            for n in range(MARKERS)]


def _add_marked_customers(warehouse: FileWarehouse, client: str) -> None:
    with warehouse.writer() as conn:
        # Stored as is, so a copy left in the file shows in its bytes.
        conn.execute("PRAGMA force_compression = 'uncompressed'")
        conn.execute("INSERT INTO stripe.customers (client_id, id, email, raw) "
                     "SELECT ?, 'cus_marker_' || m, m, '{}' FROM unnest(?) AS u(m)",
                     [client, [m.decode() for m in _markers(client)]])
        conn.execute("CHECKPOINT")


def _widgets(warehouse: Warehouse, client: str) -> str:
    results = run_widgets(client, warehouse=warehouse, now=NOW,
                          start=(NOW - timedelta(days=365)).date(), end=NOW.date())
    return json.dumps([r.to_json() for r in results], sort_keys=True, default=str)


def _keepers_rows(warehouse: Warehouse) -> dict[str, list[tuple]]:
    with warehouse.reader() as conn:
        tables = conn.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables() "
                              "WHERE schema_name IN ('stripe', 'reporting')").fetchall()
        return {table: sorted(map(str, conn.execute(
            f"SELECT * FROM {table} WHERE client_id = 'keeper'").fetchall()))
            for (table,) in tables}


def _found(home: Path, markers: list[bytes]) -> int:
    """How many markers some file of the warehouse (the database, its WAL, spill files) holds."""
    files = [p for p in home.rglob("warehouse.duckdb*") if p.is_file()]
    contents = b"".join(p.read_bytes() for p in files)
    return sum(1 for marker in markers if marker in contents)


def test_purge_leaves_no_copy_of_the_clients_rows_in_the_file(home, sandbox_factory):
    server = sandbox_factory([AccountSpec(name, **SMALL) for name in ("keeper", "gone")])
    warehouse = warehouse_from_settings()
    assert isinstance(warehouse, FileWarehouse)
    for name in ("keeper", "gone"):
        save(name)
        assert run_sync(server, name, warehouse).errors == []
        _add_marked_customers(warehouse, name)
    assert _found(home, _markers("gone")) == MARKERS  # the check can see what it looks for
    with warehouse.writer() as conn:
        build_reporting_tables(conn, "keeper", now=NOW)
    widgets, keepers_rows = _widgets(warehouse, "keeper"), _keepers_rows(warehouse)
    assert '"state": "ok"' in widgets

    purged = run_cli("disconnect", "gone", "--purge")

    assert purged.returncode == 0, purged.stderr
    assert "for good" in purged.stdout
    assert _found(home, _markers("gone")) == 0
    with warehouse.reader() as conn:
        assert conn.execute("SELECT count(*) FROM stripe.customers WHERE client_id = 'gone'"
                            ).fetchone()[0] == 0
        kept = {m for (m,) in conn.execute(
            "SELECT email FROM stripe.customers WHERE id LIKE 'cus_marker_%'").fetchall()}
    assert kept == {m.decode() for m in _markers("keeper")}
    assert _widgets(warehouse, "keeper") == widgets  # tables, macros and rows all copied
    assert _keepers_rows(warehouse) == keepers_rows
