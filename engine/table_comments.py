"""`COMMENT ON` every table and column of stripe.* and reporting.*, from the same specs that
give Dagster its column descriptions: an analyst browsing the warehouse reads what the asset
pages say."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from engine.streams import Column

COMMENTED_SCHEMAS = ("stripe", "reporting")


@dataclass(frozen=True)
class TableDoc:
    """A table's description and its columns (each with its own description)."""

    qualified: str  # schema.table
    description: str
    columns: tuple[Column, ...]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def comment_statements(doc: TableDoc) -> list[str]:
    return [f"COMMENT ON TABLE {doc.qualified} IS {_literal(doc.description)}",
            *(f'COMMENT ON COLUMN {doc.qualified}."{c.name}" IS {_literal(c.description)}'
              for c in doc.columns)]


def _present(conn: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], str | None]:
    """The comments the warehouse holds now: (schema.table, column or '') -> comment."""
    where = ("database_name = current_database() AND schema_name IN "
             f"({', '.join(_literal(s) for s in COMMENTED_SCHEMAS)})")
    tables = conn.execute(
        f"SELECT schema_name || '.' || table_name, '', comment FROM duckdb_tables() "
        f"WHERE {where}").fetchall()
    columns = conn.execute(
        f"SELECT schema_name || '.' || table_name, column_name, comment FROM duckdb_columns() "
        f"WHERE {where}").fetchall()
    return {(table, column): comment for table, column, comment in [*tables, *columns]}


def apply_comments(conn: duckdb.DuckDBPyConnection, docs: list[TableDoc]) -> int:
    """Write the comments that differ from the warehouse's; returns how many.

    Only the differing ones: on DuckLake every COMMENT is a catalog change (a new schema
    version), so writing unchanged ones at each start would conflict with other writers.
    """
    present = _present(conn)
    written = 0
    for doc in docs:
        wanted = [((doc.qualified, ""), doc.description),
                  *(((doc.qualified, c.name), c.description) for c in doc.columns)]
        for (key, text), statement in zip(wanted, comment_statements(doc), strict=True):
            if present.get(key, text) != text:  # a missing table is not ours to comment
                conn.execute(statement)
                written += 1
    return written
