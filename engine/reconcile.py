"""Reconciliation: the warehouse checked against Stripe's own arithmetic, in SQL.

Three checks per client, each per currency:
- balance: Stripe's balance snapshot equals the net of its balance transactions, split
  available/pending by each transaction's `available_on` as of the snapshot (Stripe holds
  a payment's funds as pending until then);
- charges: every succeeded charge has its balance transaction in the warehouse;
- payouts: every payout's balance transaction is there and moves exactly its amount.

The in-flight window: a sync lists objects created up to a couple of seconds before it
started (engine/sync.py SETTLE_SECONDS), then reads the balance, which already counts
transactions made since. So a snapshot is judged once the balance transactions have landed
past it (the latest such snapshot); only when none has yet (a first sync) is the newest one
judged. Objects created after the judged snapshot are left for the next one, and a
transaction stamped in the very second of the snapshot may be counted in it or not.

A key connected without permission to read one of a check's inputs skips that check: the
table is empty by the client's choice, and judging it would turn every figure `stale`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from engine.currencies import currency_exponent
from engine.warehouse import FAILURES_TABLE, STATE_TABLE, Warehouse

# Widgets' `stale` reason starts with this; a passing run clears only such a failure.
PREFIX = "The reports do not add up with Stripe:"


@dataclass(frozen=True)
class Mismatch:
    check: str  # available_balance, pending_balance, charges or payouts
    currency: str
    difference: int  # minor units: Stripe's figure minus the warehouse's
    detail: str  # what differs, for the client

    def sentence(self) -> str:
        return f"{self.detail} (difference {money(self.difference, self.currency)})."


def money(minor: int, currency: str) -> str:
    exponent = currency_exponent(currency)
    return f"{minor / 10 ** exponent:,.{exponent}f} {currency.upper()}"


def _cursor(conn: duckdb.DuckDBPyConnection, client_id: str) -> datetime | None:
    row = conn.execute(f"SELECT created_cursor FROM {STATE_TABLE} WHERE client_id = ? "
                       "AND stream = 'balance_transactions'", [client_id]).fetchone()
    return datetime.fromtimestamp(row[0], UTC) if row and row[0] is not None else None


def _snapshot_time(conn: duckdb.DuckDBPyConnection, client_id: str,
                   cursor: datetime | None) -> datetime | None:
    """The snapshot to judge: the latest the transactions cover, else the newest."""
    covered, newest = conn.execute(
        "SELECT max(captured_at) FILTER (WHERE captured_at <= ?), max(captured_at) "
        "FROM stripe.balance WHERE client_id = ?", [cursor, client_id]).fetchone()
    return covered or newest


BALANCE_SQL = """
WITH txns AS (
    SELECT currency,
           sum(net) FILTER (WHERE available_on <= $at) AS available,
           sum(net) FILTER (WHERE available_on > $at) AS pending
    FROM stripe.balance_transactions
    WHERE client_id = $client AND created <= $at - $edge AND NOT coalesce(is_deleted, false)
    GROUP BY currency)
SELECT coalesce(b.currency, t.currency),
       coalesce(b.available, 0) - coalesce(t.available, 0),
       coalesce(b.pending, 0) - coalesce(t.pending, 0)
FROM (SELECT currency, available, pending FROM stripe.balance
      WHERE client_id = $client AND captured_at = $at) b
FULL JOIN txns t ON b.currency = t.currency
ORDER BY 1
"""


def _balance_differences(conn: duckdb.DuckDBPyConnection, client_id: str, at: datetime,
                         edge: timedelta) -> dict[str, tuple[int, int]]:
    return {currency: (int(available), int(pending)) for currency, available, pending in
            conn.execute(BALANCE_SQL, {"client": client_id, "at": at, "edge": edge}).fetchall()}


def _balance(conn: duckdb.DuckDBPyConnection, client_id: str, at: datetime) -> list[Mismatch]:
    """Stripe stamps objects to the second and the snapshot too: a transaction made in the
    very second the balance was read may be in it or not, so either reading passes."""
    inclusive = _balance_differences(conn, client_id, at, timedelta(0))
    strict = _balance_differences(conn, client_id, at, timedelta(seconds=1))
    found = []
    for currency, differences in inclusive.items():
        if not any(differences) or not any(strict.get(currency, (0, 0))):
            continue
        for kind, difference in zip(("available", "pending"), differences, strict=True):
            if difference:
                found.append(Mismatch(
                    f"{kind}_balance", currency, difference,
                    f"The {kind} {currency.upper()} balance Stripe reported at "
                    f"{at:%Y-%m-%d %H:%M} UTC is not the sum of the account's transactions "
                    "in the reports"))
    return found


CHARGES_SQL = """
SELECT c.currency, count(*), sum(c.amount)
FROM stripe.charges c
LEFT JOIN stripe.balance_transactions t
  ON t.client_id = c.client_id AND t.id = c.balance_transaction
WHERE c.client_id = $client AND c.status = 'succeeded' AND NOT coalesce(c.is_deleted, false)
  AND c.created <= $at AND t.id IS NULL
GROUP BY ALL ORDER BY 1
"""


def _charges(conn: duckdb.DuckDBPyConnection, client_id: str, at: datetime) -> list[Mismatch]:
    return [Mismatch("charges", currency, int(amount),
                     f"{count} successful {currency.upper()} payment(s) have no matching "
                     "movement of the balance in the reports")
            for currency, count, amount in conn.execute(
                CHARGES_SQL, {"client": client_id, "at": at}).fetchall()]


PAYOUTS_SQL = """
SELECT p.currency, count(*), sum(p.amount + coalesce(t.amount, 0))
FROM stripe.payouts p
LEFT JOIN stripe.balance_transactions t
  ON t.client_id = p.client_id AND t.id = (p.raw->>'$.balance_transaction')
WHERE p.client_id = $client AND NOT coalesce(p.is_deleted, false) AND p.created <= $at
  AND (t.id IS NULL OR t.amount <> -p.amount OR t.currency <> p.currency)
GROUP BY ALL ORDER BY 1
"""


def _payouts(conn: duckdb.DuckDBPyConnection, client_id: str, at: datetime) -> list[Mismatch]:
    return [Mismatch("payouts", currency, int(difference),
                     f"{count} {currency.upper()} payout(s) do not match the balance "
                     "movement that paid them out in the reports")
            for currency, count, difference in conn.execute(
                PAYOUTS_SQL, {"client": client_id, "at": at}).fetchall()]


# Each check and what it reads: a key connected without one of these cannot be judged by
# it (its table is empty by design, not by a missed page).
CHECKS = (
    (_balance, {"balance", "balance_transactions"}),
    (_charges, {"charges", "balance_transactions"}),
    (_payouts, {"payouts", "balance_transactions"}),
)


def reconcile(conn: duckdb.DuckDBPyConnection, client_id: str,
              cannot_read: Collection[str] = ()) -> list[Mismatch] | None:
    """What does not add up for the client; None when there is nothing to judge (no balance
    snapshot yet, or a key that may not read what every check needs)."""
    checks = [check for check, reads in CHECKS if not reads & set(cannot_read)]
    at = _snapshot_time(conn, client_id, _cursor(conn, client_id))
    if at is None or not checks:
        return None
    return [mismatch for check in checks for mismatch in check(conn, client_id, at)]


def failure_message(mismatches: list[Mismatch]) -> str:
    """One client-readable sentence for the widgets' `stale` reason."""
    return " ".join([PREFIX, *(m.sentence() for m in mismatches)])


def record_outcome(warehouse: Warehouse, client_id: str, mismatches: list[Mismatch]) -> None:
    """A failure turns the client's widgets `stale` with the reason; a pass clears only a
    reconciliation failure (a failed sync stays said until a sync succeeds)."""
    if mismatches:
        warehouse.record_failure(client_id, failure_message(mismatches))
        return
    with warehouse.writer() as conn:
        conn.execute(f"DELETE FROM {FAILURES_TABLE} WHERE client_id = ? AND starts_with("
                     "message, ?)", [client_id, PREFIX])


def reconcile_client(warehouse: Warehouse, client_id: str,
                     cannot_read: Collection[str] = ()) -> list[Mismatch] | None:
    """Run the checks on committed data and record the outcome where widgets read it;
    `cannot_read` names what the client's key was connected without (see
    engine.permissions.unreadable)."""
    with warehouse.reader() as conn:
        mismatches = reconcile(conn, client_id, cannot_read)
    if mismatches is not None:
        record_outcome(warehouse, client_id, mismatches)
    return mismatches
