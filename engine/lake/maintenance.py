"""Keeping the lake short and its deletions final: the nightly maintenance pass, and what
follows a purge (the client's rows rewritten out of every file, older snapshots expired)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import duckdb

from engine.lake.database import ALIAS, LakeDatabase
from engine.lake.target import quoted
from engine.lake.turns import CommitTurn

# Files no catalog entry names that a purge deletes: those older than this (a transaction
# that is still writing its files is younger; an aborted one's may hold the client's rows).
ORPHANS_OLDER_THAN = timedelta(hours=1)
# What a purge costs the other clients, said with its count.
PURGE_NOTE = ("To make that final, every earlier snapshot of the DuckLake warehouse was "
              "expired and the files holding those rows rewritten: time travel "
              "(AT VERSION/TIMESTAMP) for every client now starts at this purge.")


@dataclass(frozen=True)
class LakeMaintenance:
    """What one maintenance pass did: data files and snapshots before and after."""

    files_before: int
    files_after: int
    snapshots_before: int
    snapshots_after: int
    seconds: float


def files_and_snapshots(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """The lake's data and delete files, and its snapshots."""
    files = conn.execute(f"SELECT coalesce(sum(file_count + delete_file_count), 0) "
                         f"FROM ducklake_table_info('{ALIAS}')").fetchone()
    snapshots = conn.execute(f"SELECT count(*) FROM ducklake_snapshots('{ALIAS}')").fetchone()
    return int(files[0]) if files else 0, int(snapshots[0]) if snapshots else 0


def maintain(database: LakeDatabase, keep_snapshots: timedelta,
             keep_unused_files: timedelta) -> LakeMaintenance:
    """DuckLake's maintenance, the steps of its CHECKPOINT: per table, inlined rows
    flushed, small files merged, files with many deleted rows rewritten; then snapshots
    older than `keep_snapshots` expired and files unused for `keep_unused_files` deleted
    (a reader may still be scanning a newer one).

    Every build and sync adds small files and a snapshot, and DuckLake keeps them all
    until told; the file list each statement reads grows with them. Each step runs in
    the commit turn, as it rewrites files other writers' deletes would refer to; a step
    and a merged file at a time, so a writer waits for one of them, never for a table's
    or the whole pass.
    """
    started = time.monotonic()
    turn, lake = CommitTurn(database.turn_sessions), quoted(ALIAS)
    with database.session() as conn:
        try:
            files_before, snapshots_before = files_and_snapshots(conn)
            tables = conn.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                  "WHERE database_name = ?", [ALIAS]).fetchall()
            for schema, table in tables:
                where = f"{quoted(table)}, schema => {quoted(schema)}"
                with turn.held():
                    conn.execute(f"CALL ducklake_flush_inlined_data({lake}, schema_name => "
                                 f"{quoted(schema)}, table_name => {quoted(table)})")
                # One merged file per turn: a large table's merge is many turns, so a writer
                # waits for one file's worth of work (the lake's target file size), never
                # for the whole table.
                for _ in range(max(1, files_before)):  # each merge leaves a file fewer
                    with turn.held():
                        if not conn.execute(f"CALL ducklake_merge_adjacent_files({lake}, "
                                            f"{where}, max_compacted_files => 1)").fetchall():
                            break
                with turn.held():
                    conn.execute(f"CALL ducklake_rewrite_data_files({lake}, {where})")
            with turn.held():
                for step, age in (("expire_snapshots", keep_snapshots),
                                  ("cleanup_old_files", keep_unused_files),
                                  ("delete_orphaned_files", keep_unused_files)):
                    conn.execute(f"CALL ducklake_{step}({lake}, older_than => now() - "
                                 f"INTERVAL '{int(age.total_seconds())} seconds')")
            files_after, snapshots_after = files_and_snapshots(conn)
        finally:
            turn.close()
    return LakeMaintenance(files_before, files_after, snapshots_before, snapshots_after,
                           time.monotonic() - started)


def erase_history(database: LakeDatabase, tables: list[str]) -> None:
    """After rows of `tables` were deleted: no snapshot or file keeps them.

    A DuckLake DELETE writes a delete file, and time travel still reads the old snapshots,
    their inlined rows and their data files. So each table's inlined rows are flushed and
    every file with a deleted row is rewritten without it; then every snapshot but the
    current one is expired and the files only they used are deleted at once. All in the
    commit turn: no writer commits in between.
    """
    turn, lake = CommitTurn(database.turn_sessions), quoted(ALIAS)
    with database.session() as conn:
        try:
            with turn.held():
                for qualified in tables:
                    schema, table = qualified.split(".", 1)
                    conn.execute(f"CALL ducklake_flush_inlined_data({lake}, schema_name => "
                                 f"{quoted(schema)}, table_name => {quoted(table)})")
                    conn.execute(f"CALL ducklake_rewrite_data_files({lake}, {quoted(table)}, "
                                 f"schema => {quoted(schema)}, delete_threshold => 0)")
                conn.execute(f"CALL ducklake_expire_snapshots({lake}, older_than => now())")
                conn.execute(f"CALL ducklake_cleanup_old_files({lake}, cleanup_all => true)")
                conn.execute(f"CALL ducklake_delete_orphaned_files({lake}, older_than => now() - "
                             f"INTERVAL '{int(ORPHANS_OLDER_THAN.total_seconds())} seconds')")
        finally:
            turn.close()
