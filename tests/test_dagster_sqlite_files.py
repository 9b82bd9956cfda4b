"""Dagster's SQLite files under a sync run: kept open while the run writes its events, then
left whole, folded and closed (pipelines/sqlite_files.py)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from alembic.script import ScriptDirectory
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.storage.runs.sqlite import sqlite_run_storage
from dagster._core.storage.sql import check_alembic_revision, get_alembic_config
from sqlalchemy import create_engine

from apps.launch import materialize_client
from engine.credentials import connect_client
from pipelines.instance import get_instance
from sandbox import AccountSpec


def _open_by_this_process(path: Path) -> list[str]:
    """The files of this process's open descriptors that are `path` or its log."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


def test_a_runs_events_are_all_stored_and_its_files_end_whole_and_closed(home,
                                                                         sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", charges=60, customers=8)])
    connect_client("acme", server.world.accounts["acme"].secret_key)

    outcomes = [materialize_client("acme"), materialize_client("acme")]

    assert all(o.success for o in outcomes), [o.message for o in outcomes]
    instance = DagsterInstance.get()
    for outcome in outcomes:
        run = instance.get_run_by_id(outcome.run_id)
        assert run.status == DagsterRunStatus.SUCCESS
        events = [e.dagster_event.event_type_value for e in instance.all_logs(outcome.run_id)
                  if e.dagster_event]
        assert events[-1] == "PIPELINE_SUCCESS"
        shard = Path(instance.root_directory) / "history" / "runs" / f"{outcome.run_id}.db"
        # Nothing left open by the run, its log folded into the file when it ended ...
        assert _open_by_this_process(shard) == []
        assert not Path(f"{shard}-wal").exists()
        with sqlite3.connect(shard) as conn:  # ... and the file whole, in WAL mode
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            stored = conn.execute("SELECT count(*) FROM event_logs").fetchone()[0]
        assert stored == len(instance.all_logs(outcome.run_id))
    # The cross-run index has the runs' asset events: the UI's asset pages read them.
    charges = instance.get_latest_materialization_event(AssetKey(["stripe", "charges"]))
    assert charges.run_id == outcomes[0].run_id


def test_an_instance_opened_again_in_the_process_checks_its_files_revisions(home):
    """The migration scripts are read once a process: a second opening still compares each
    file's recorded revision with the newest script, and finds them current."""
    get_instance()
    get_instance()

    runs_db = Path(os.environ["DAGSTER_HOME"]) / "history" / "runs.db"
    config = get_alembic_config(sqlite_run_storage.__file__)
    with create_engine(f"sqlite:///{runs_db}").connect() as conn:
        recorded, newest = check_alembic_revision(config, conn)
    assert recorded == newest
    # The newest as alembic reads it from the scripts themselves, not from the cache.
    fresh = ScriptDirectory(ScriptDirectory.from_config(config).dir)
    assert newest == fresh.as_revision_number("head")
