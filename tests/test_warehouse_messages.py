"""A warehouse setting that names something unusable ends as one line saying what to do,
through the real command: a SQLite file, a folder, a truncated file, a read-only warehouse
file, a read-only DuckLake data folder. Nothing is downloaded, nothing stored changes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import duckdb
import pytest

from sandbox import AccountSpec
from tests.test_bad_input import _read_only, refused
from tests.test_cli import CLI, SMALL, run_cli


@pytest.fixture
def connected(home, sandbox_factory) -> Path:
    """acme connected to a sandbox account; the warehouse not made yet."""
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    key = server.world.accounts["acme"].secret_key
    assert run_cli("connect", "acme", stdin=key + "\n").returncode == 0
    return home


def _sqlite_file(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")


def _folder(path: Path) -> None:
    path.mkdir()


def _truncated_file(path: Path) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE t AS SELECT range AS n FROM range(200000)")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 3])


@pytest.mark.parametrize(("make", "code", "phrase"), [
    (_sqlite_file, 2, "is a SQLite database, not a DuckDB file"),
    (_folder, 2, "is a folder, not a DuckDB file"),
    (_truncated_file, 1, "is damaged or not a database"),
])
def test_a_warehouse_that_is_not_a_duckdb_file_is_named_with_what_to_do(
        connected, tmp_path, make, code, phrase):
    target = tmp_path / "given.duckdb"
    make(target)
    before = sorted((p.name, p.read_bytes()) for p in [target] if p.is_file())
    env = {"STRIPE_REPORTS_WAREHOUSE": str(target)}
    for command in (["widget", "acme", "mrr"], ["sync", "acme"]):
        line = refused(run_cli(*command, env=env), code, str(target), phrase,
                       "STRIPE_REPORTS_WAREHOUSE", "a new one")
        assert "extension" not in line.lower()  # DuckDB did not try to fetch one
    assert sorted((p.name, p.read_bytes()) for p in [target] if p.is_file()) == before


def _run_read_only(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_read_only(path), str(CLI), *args], capture_output=True, text=True,
                          timeout=180, env=dict(os.environ), cwd="/")


def test_a_read_only_warehouse_file_is_read_and_a_sync_says_it_cannot_write(connected):
    assert run_cli("sync", "acme").returncode == 0
    warehouse = connected / "warehouse.duckdb"
    before = warehouse.read_bytes()

    refused(_run_read_only(warehouse, "sync", "acme"), 1,
            f"Cannot write the warehouse {warehouse}", "Make it writable")
    shown = _run_read_only(warehouse, "widget", "acme", "mrr")

    assert shown.returncode == 0 and "state: ok" in shown.stdout, shown.stderr
    assert warehouse.read_bytes() == before
