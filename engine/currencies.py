"""Minor units per currency: how many decimals Stripe's integer amounts carry.

Stripe sends every amount as an integer in the currency's smallest unit. Most currencies
have two decimals (1234 = 12.34 USD); the zero-decimal ones have none (1234 = 1,234 JPY);
a few have three (1234 = 1.234 KWD). Lists from Stripe's currency documentation.
"""

from __future__ import annotations

ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())


def currency_exponent(currency: str | None) -> int:
    """Decimals of the currency's major unit (2 when unknown)."""
    code = (currency or "").lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def _sql_list(codes: frozenset[str]) -> str:
    return ", ".join(f"'{code}'" for code in sorted(codes))


def exponent_macro_sql() -> str:
    """The same rule as a DuckDB macro, so the SQL files and Python never disagree."""
    return (
        "CREATE OR REPLACE MACRO reporting.currency_exponent(cur) AS CASE "
        f"WHEN lower(cur) IN ({_sql_list(ZERO_DECIMAL)}) THEN 0 "
        f"WHEN lower(cur) IN ({_sql_list(THREE_DECIMAL)}) THEN 3 ELSE 2 END"
    )
