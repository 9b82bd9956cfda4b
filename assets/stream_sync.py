"""One client's sync: for each stream, events then new objects, landed in short transactions.

Per stream, a run
1. applies the events since the last run (updates and deletions of older objects),
   newest snapshot per object;
2. lists objects created since the cursor, in parallel time slices;
3. merges rows in chunks; the cursor moves in the same transaction as the rows,
   only over time ranges that have completely landed.
A run that dies resumes from the last committed cursor: rows are upserted by
(client_id, id), so nothing is lost and nothing is duplicated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa

from assets.normalize import to_arrow
from assets.streams import BALANCE_COLUMNS, StreamSpec
from resources.extract import Coverage, extract_events, extract_window
from resources.failures import CredentialFailure, StripeAccessError, WrongAccount, reconnect_steps
from resources.stripe_api import StripeAccount
from resources.warehouse import (
    MergeCounts,
    StreamState,
    Warehouse,
    flag_unseen_as_deleted,
    insert_rows,
    merge_rows,
    read_state,
    replace_children,
    save_state,
)

EVENT_RETENTION = timedelta(days=30)
# Stripe keeps 30 days of events; refresh in full a little before that edge.
EVENT_SAFETY_MARGIN = timedelta(hours=6)
# Objects created in the last seconds may not be listed yet; the next run takes them.
SETTLE_SECONDS = 2
CHUNK_ROWS = 20_000
FLUSH_SECONDS = 5.0
# Stripe's founding: where a first full listing starts when the account's age is unknown.
EPOCH_START = int(datetime(2010, 1, 1, tzinfo=UTC).timestamp())

Progress = Callable[[str, int, int], None]  # stream, rows landed so far, requests so far


@dataclass
class StreamResult:
    stream: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    events_applied: int = 0
    requests: int = 0
    created_cursor: int | None = None
    events_cursor: int | None = None
    full_refresh_reason: str | None = None
    seconds: float = 0.0
    error: StripeAccessError | None = None

    @property
    def rows_landed(self) -> int:
        return self.inserted + self.updated


@dataclass
class SyncReport:
    client_id: str
    account_id: str | None
    streams: dict[str, StreamResult] = field(default_factory=dict)
    balance_rows: int = 0
    requests: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> list[StripeAccessError]:
        return [r.error for r in self.streams.values() if r.error is not None]


def verify_account(account: StripeAccount, expected_account_id: str | None) -> dict:
    """The credential check: who the key belongs to (GET /v1/account).

    Raises a CredentialFailure for a rejected key or a key of another account.
    """
    info = account.tagged("account").get("/v1/account")
    if expected_account_id and info.get("id") != expected_account_id:
        raise WrongAccount(
            message=f"The key {account.masked_key} for client {account.client_id!r} belongs to "
            f"Stripe account {info.get('id')}, not {expected_account_id} that this client's "
            "history comes from.",
            steps=reconnect_steps(account.client_id, expected_account_id),
            client_id=account.client_id, masked_key=account.masked_key, code="account_mismatch",
        )
    return info


class _StreamLoader:
    """Lands one stream's objects for one client, chunk by chunk."""

    def __init__(
        self, spec: StreamSpec, client_id: str, warehouse: Warehouse, state: StreamState,
        result: StreamResult, synced_at: datetime,
    ) -> None:
        self.spec = spec
        self.client_id = client_id
        self.warehouse = warehouse
        self.state = state
        self.result = result
        self.synced_at = synced_at

    def flush(self, objects: list[dict], deleted_ids: frozenset[str] = frozenset(),
              final: bool = False) -> None:
        rows = to_arrow(self.client_id, _newest_first_unique(objects), self.synced_at,
                        deleted_ids)
        with self.warehouse.writer() as conn:
            conn.begin()
            counts: MergeCounts = merge_rows(conn, self.spec.table, self.spec.columns, rows)
            for child in self.spec.children:
                replace_children(conn, child, rows)
            if final and self.state.full_started_at is not None:
                # A full listing has just completed: what it did not see is gone from Stripe.
                if self.spec.deletable:
                    self.result.deleted += flag_unseen_as_deleted(
                        conn, self.spec.table, self.client_id, self.state.full_started_at
                    )
                self.state.full_started_at = None
                self.state.last_full_sync = self.synced_at
            save_state(conn, self.state)
            conn.commit()
        self.result.inserted += counts.inserted
        self.result.updated += counts.updated
        self.result.created_cursor = self.state.created_cursor
        self.result.events_cursor = self.state.events_cursor


def _newest_first_unique(objects: list[dict]) -> list[dict]:
    seen: set[str] = set()
    unique = []
    for obj in objects:
        if obj["id"] not in seen:
            seen.add(obj["id"])
            unique.append(obj)
    return unique


def _full_refresh_reason(spec: StreamSpec, state: StreamState, hi: int, requested: bool
                         ) -> str | None:
    if requested:
        return "full refresh requested"
    if state.full_started_at is not None:
        return "resuming an unfinished full refresh"
    if state.created_cursor is None:
        return "first sync"
    oldest_usable = hi - (EVENT_RETENTION - EVENT_SAFETY_MARGIN).total_seconds()
    if spec.event_types and (state.events_cursor is None or state.events_cursor < oldest_usable):
        return "last sync is older than the 30 days of events Stripe keeps"
    return None


def sync_stream(
    account: StripeAccount,
    warehouse: Warehouse,
    spec: StreamSpec,
    *,
    full_refresh: bool = False,
    account_created: int | None = None,
    concurrency: int = 8,
    progress: Progress | None = None,
    now: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> StreamResult:
    started = time.monotonic()
    account = account.tagged(spec.name)
    client_id = account.client_id
    synced_at = datetime.now(UTC)
    hi = int(now if now is not None else time.time()) - SETTLE_SECONDS
    with warehouse.reader() as conn:
        state = read_state(conn, client_id, spec.name)
    result = StreamResult(spec.name, created_cursor=state.created_cursor,
                          events_cursor=state.events_cursor)
    loader = _StreamLoader(spec, client_id, warehouse, state, result, synced_at)
    reason = _full_refresh_reason(spec, state, hi, full_refresh)
    result.full_refresh_reason = reason

    if reason is not None and state.full_started_at is None:
        state.full_started_at = synced_at
        state.created_cursor = None
    if reason is None and spec.event_types:
        _apply_events(account, spec, loader, lo=state.events_cursor or hi, hi=hi)
    # After a full listing that starts now, events from `hi` on carry every later change.
    if state.events_cursor is None or reason is not None:
        state.events_cursor = hi

    lo = state.created_cursor
    if lo is None:
        lo = min(account_created or EPOCH_START, hi)
    coverage = Coverage(lo)
    buffer: list[dict] = []
    last_flush = time.monotonic()
    for page in extract_window(account, spec.endpoint, dict(spec.list_params), lo, hi,
                               concurrency=concurrency):
        buffer.extend(page.objects)
        for done in page.completed:
            coverage.add(*done)
        due = time.monotonic() - last_flush > FLUSH_SECONDS
        if len(buffer) >= chunk_rows or (due and coverage.frontier > (state.created_cursor or lo)):
            state.created_cursor = coverage.frontier
            loader.flush(buffer)
            buffer = []
            last_flush = time.monotonic()
            if progress:
                progress(spec.name, result.rows_landed, account.requests_by_tag.get(spec.name, 0))
    state.created_cursor = hi
    loader.flush(buffer, final=True)
    result.requests = account.requests_by_tag.get(spec.name, 0)
    result.seconds = time.monotonic() - started
    if progress:
        progress(spec.name, result.rows_landed, result.requests)
    return result


def _apply_events(account: StripeAccount, spec: StreamSpec, loader: _StreamLoader,
                  lo: int, hi: int) -> None:
    """Newest snapshot of every object changed in [lo, hi), deletions flagged."""
    seen: set[str] = set()
    changed: list[dict] = []
    deleted: set[str] = set()
    for page in extract_events(account, spec.event_types, lo, hi):
        for event in page:
            obj = (event.get("data") or {}).get("object") or {}
            if obj.get("object") != spec.object_type or obj.get("id") in seen:
                continue
            seen.add(obj["id"])
            changed.append(obj)
            if event.get("type") in spec.deleted_event_types:
                deleted.add(obj["id"])
        if len(changed) >= CHUNK_ROWS:
            loader.flush(changed, frozenset(deleted))
            changed = []
    loader.state.events_cursor = hi
    loader.flush(changed, frozenset(deleted))
    loader.result.events_applied = len(seen)
    loader.result.deleted += len(deleted)


def snapshot_balance(account: StripeAccount, warehouse: Warehouse) -> int:
    """One row per currency: what is available and pending right now."""
    balance = account.tagged("balance").get("/v1/balance")
    captured_at = datetime.now(UTC).replace(microsecond=0)
    totals: dict[str, dict[str, int]] = {}
    for kind in ("available", "pending"):
        for entry in balance.get(kind) or []:
            currency = entry["currency"]
            totals.setdefault(currency, {"available": 0, "pending": 0})[kind] += entry["amount"]
    if not totals:
        return 0
    currencies = sorted(totals)
    names = [c.name for c in BALANCE_COLUMNS]
    rows = pa.table({
        "client_id": [account.client_id] * len(currencies),
        "id": [f"{c}:{int(captured_at.timestamp())}" for c in currencies],
        "captured_at": pa.array([captured_at] * len(currencies), pa.timestamp("s", tz="UTC")),
        "currency": currencies,
        "available": pa.array([totals[c]["available"] for c in currencies], pa.int64()),
        "pending": pa.array([totals[c]["pending"] for c in currencies], pa.int64()),
        "raw": [orjson.dumps(balance).decode()] * len(currencies),
    }).select(names)
    with warehouse.writer() as conn:
        insert_rows(conn, "balance", rows)
    return len(currencies)


def sync_client(
    account: StripeAccount,
    warehouse: Warehouse,
    streams: Iterable[StreamSpec],
    *,
    expected_account_id: str | None = None,
    full_refresh: bool = False,
    include_balance: bool = True,
    concurrency: int = 8,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> SyncReport:
    """Check the key, then sync every stream side by side under the account's one pacer.

    A credential failure stops everything at once; any other stream failure lets the
    others finish and land, and is reported in `errors`.
    """
    started = time.monotonic()
    info = verify_account(account, expected_account_id)
    report = SyncReport(account.client_id, info.get("id"))
    specs = list(streams)
    failed = threading.Event()

    def run(spec: StreamSpec) -> StreamResult:
        if failed.is_set():
            return StreamResult(spec.name)
        try:
            return sync_stream(account, warehouse, spec, full_refresh=full_refresh,
                               account_created=info.get("created"), concurrency=concurrency,
                               progress=progress, chunk_rows=chunk_rows)
        except CredentialFailure:
            failed.set()
            raise
        except StripeAccessError as error:
            return StreamResult(spec.name, error=error)

    with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
        futures = [pool.submit(run, spec) for spec in specs]
        for spec, future in zip(specs, futures, strict=True):
            report.streams[spec.name] = future.result()
    if include_balance:
        report.balance_rows = snapshot_balance(account, warehouse)
    report.requests = account.requests
    report.seconds = time.monotonic() - started
    return report
