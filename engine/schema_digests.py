"""A warehouse schema applied once: the digest of what made it, recorded in the warehouse.

Creating tables "if not exists" and adding columns "if not exists" is ~200 statements for the
stripe.* tables alone (0.1 s a writer, several writers a sync), and on DuckLake each catalog
change is a new schema version. A writer whose warehouse records the digest of this code's
statements skips them; new code (another digest) applies them again, once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import duckdb

SCHEMA_DIGESTS = "meta.schema_digests"


def digest_of(statements: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(statements).encode()).hexdigest()


def apply_unless_recorded(conn: duckdb.DuckDBPyConnection, name: str, digest: str,
                          apply: Callable[[], None]) -> bool:
    """Run `apply` unless the warehouse records `digest` under `name`, then record it.
    Returns whether it ran. `name` and `digest` are ours (a word, a hex digest): literals."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS meta")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_DIGESTS} (name VARCHAR, digest VARCHAR)")
    recorded = conn.execute(
        f"SELECT digest FROM {SCHEMA_DIGESTS} WHERE name = '{name}'").fetchone()
    if recorded and recorded[0] == digest:
        return False
    apply()
    conn.execute(f"DELETE FROM {SCHEMA_DIGESTS} WHERE name = '{name}'")
    conn.execute(f"INSERT INTO {SCHEMA_DIGESTS} VALUES ('{name}', '{digest}')")
    return True
