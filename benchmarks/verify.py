"""Every row checked: a table's ids for a client equal, as a set and in number, the source's ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class Verification:
    table: str
    expected: int
    rows: int
    distinct: int
    missing: int  # listed by the source, absent from the table
    extra: int  # in the table, not listed by the source

    @property
    def ok(self) -> bool:
        return (self.rows == self.expected == self.distinct) and not self.missing and not self.extra

    def describe(self) -> str:
        if self.ok:
            return f"{self.table}: {self.rows:,} rows = source"
        return (f"{self.table}: {self.rows:,} rows ({self.distinct:,} distinct) for "
                f"{self.expected:,} in the source; {self.missing:,} missing, {self.extra:,} extra")


def verify_table(conn: duckdb.DuckDBPyConnection, table: str, client_column: str | None,
                 client_id: str | None, expected_ids: Path) -> Verification:
    """Compare `table`'s ids (only the client's rows when `client_column` is set)."""
    where = f"WHERE {client_column} = $client" if client_column else ""
    params = {"client": client_id} if client_column else {}
    landed = f"(SELECT id FROM {table} {where})"
    source = f"read_parquet('{expected_ids}')"
    row = conn.execute(
        f"""SELECT (SELECT count(*) FROM {source}),
                   (SELECT count(*) FROM {landed}),
                   (SELECT count(DISTINCT id) FROM {landed}),
                   (SELECT count(*) FROM {source} s WHERE s.id NOT IN (SELECT id FROM {landed})),
                   (SELECT count(*) FROM {landed} w
                     WHERE w.id NOT IN (SELECT id FROM {source}))""",
        params,
    ).fetchone()
    assert row is not None
    return Verification(table, *(int(v) for v in row))


def verify_warehouse(warehouse: Path, client_id: str, expected: dict[str, Path]
                     ) -> list[Verification]:
    """Each stream's stripe.<stream> rows of the client against the source's ids."""
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        return [verify_table(conn, f"stripe.{stream}", "client_id", client_id, path)
                for stream, path in expected.items()]
    finally:
        conn.close()
