"""Named parameters for the SQL files and widget queries: `$name` in the text."""

from __future__ import annotations

import re
from typing import Any

_PARAMETER = re.compile(r"\$([a-z_]+)")


def bound(sql: str, values: dict[str, Any]) -> dict[str, Any]:
    """The values the statement names, and only those: DuckDB rejects extra ones.

    A name the statement uses but `values` lacks is a KeyError, not a silent NULL.
    """
    return {name: values[name] for name in set(_PARAMETER.findall(sql))}
