"""Readers (widgets, the report page) get their turn while several syncs keep writing:
writers queueing one after another must not starve a read for more than a moment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine.warehouse_factory import open_warehouse

ROOT = Path(__file__).resolve().parent.parent
WRITERS = 4
BUSY_WRITER = """
import sys, time
from engine.warehouse_factory import open_warehouse
warehouse = open_warehouse(sys.argv[1], lock_timeout=60)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    with warehouse.writer() as conn:  # a chunk landing: the lock held for a while
        conn.execute("INSERT INTO main.marks VALUES (1)")
        time.sleep(0.4)
"""


def test_a_read_waits_little_while_four_syncs_keep_writing(tmp_path):
    warehouse = open_warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.writer() as conn:
        conn.execute("CREATE TABLE main.marks (i INTEGER)")
    writers = [subprocess.Popen([sys.executable, "-c", BUSY_WRITER, str(warehouse.path), "12"],
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
               for _ in range(WRITERS)]
    time.sleep(2)  # the writers are queueing for the lock
    waits = []
    try:
        while len(waits) < 12:
            started = time.monotonic()
            with warehouse.reader() as conn:
                conn.execute("SELECT count(*) FROM main.marks").fetchone()
            waits.append(time.monotonic() - started)
            time.sleep(0.2)
    finally:
        for writer in writers:
            writer.wait(timeout=90)
    assert [w.returncode for w in writers] == [0] * WRITERS
    # Each writer holds the lock 0.4 s; a fair reader waits about one holder out (it waited
    # until every writer had finished, 12 s here, before readers and writers took turns).
    assert max(waits) < 3.0, f"reads waited {sorted(waits)[-3:]} s"
