"""The DuckLake catalog as `STRIPE_REPORTS_WAREHOUSE` gives it: recognised, parsed, masked."""

from __future__ import annotations

import os
import re

from engine.settings import DUCKLAKE_PREFIX
from engine.user_errors import USAGE, CommandError

POSTGRES_CATALOG = DUCKLAKE_PREFIX + "postgres:"


def is_lake_target(target: str | os.PathLike[str]) -> bool:
    return os.fspath(target).startswith(DUCKLAKE_PREFIX)


def masked(target: str) -> str:
    """The catalog as it may be shown: a password written into it is hidden."""
    return re.sub(r"(password\s*=\s*)\S+", r"\1…", target)


def catalog_dsn(target: str) -> str:
    """The libpq connection string of the catalog database."""
    if not target.startswith(POSTGRES_CATALOG):
        raise CommandError(
            f"STRIPE_REPORTS_WAREHOUSE={masked(target)!r}: only a PostgreSQL catalog is "
            "supported (`ducklake:postgres:dbname=… host=… port=… user=…`); writers on "
            "several machines share it.", USAGE)
    return target[len(POSTGRES_CATALOG):].strip()


def quoted(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
