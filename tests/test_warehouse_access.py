"""The read-only database a process keeps open between reads never shuts writers out,
and never serves figures older than the last committed write."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from engine.warehouse import Warehouse
from engine.warehouse_factory import open_warehouse

ROOT = Path(__file__).resolve().parent.parent

WRITER_SCRIPT = """
import sys
from engine.warehouse_factory import open_warehouse
warehouse = open_warehouse(sys.argv[1], lock_timeout=20)
for i in range(20):
    with warehouse.writer() as conn:
        conn.execute("INSERT INTO main.marks VALUES (?)", [i])
"""


def _count(warehouse: Warehouse) -> int:
    with warehouse.reader() as conn:
        return conn.execute("SELECT count(*) FROM main.marks").fetchone()[0]


def test_a_process_that_keeps_reading_lets_another_process_write(tmp_path):
    warehouse = open_warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.writer() as conn:
        conn.execute("CREATE TABLE main.marks (i INTEGER)")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(warehouse.path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE,
    )
    stop = threading.Event()
    seen: list[int] = []

    def keep_reading() -> None:  # like the report page's worker threads
        while not stop.is_set():
            seen.append(_count(warehouse))

    readers = [threading.Thread(target=keep_reading) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        # Starved of the lock, the writer would give up after its 20 s and fail.
        _, errors = writer.communicate(timeout=60)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert writer.returncode == 0, errors.decode()
    assert len(seen) > 20, "the readers were not reading while the writer wrote"
    assert seen == sorted(seen), "a read went back in time"
    assert _count(warehouse) == 20  # the kept-open database sees every committed row


def test_the_processes_own_kept_reader_does_not_delay_its_writer(tmp_path):
    warehouse = open_warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.writer() as conn:
        conn.execute("CREATE TABLE main.marks (i INTEGER)")
    assert _count(warehouse) == 0
    # The reader is kept open for a moment after the read; a writer of this process
    # that waited for that would time out here.
    impatient = open_warehouse(warehouse.path, lock_timeout=0.05)
    with impatient.writer() as conn:
        conn.execute("INSERT INTO main.marks VALUES (1)")
    assert _count(warehouse) == 1
