"""One client's sync: one events listing for every stream, new objects listed only where
events cannot carry them, landed in short transactions.

A run
1. lists the events since the last run once, for every stream's event types (in as few
   requests as Stripe allows), and lands the newest snapshot of each object changed or
   created, deletions flagged: a stream without events has nothing new;
2. lists objects created since the cursor, in parallel time slices, only for the streams
   that had events, and where events cannot be trusted this run (a first, resumed or
   requested full listing, a cursor older than the 30 days of events Stripe keeps, a key
   that cannot read events) or do not exist (balance transactions);
3. merges rows in chunks; the cursor moves in the same transaction as the rows,
   only over time ranges that have completely landed. Streams with nothing new save their
   cursors together in one transaction; an unchanged balance is not written again.
A client with nothing new costs four requests: the key check, the events, the balance
transactions since the cursor and the balance.
A run that dies resumes from the last committed cursor: rows are upserted by
(client_id, id), so nothing is lost and nothing is duplicated.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import duckdb
import orjson
import pyarrow as pa

from engine.child_pages import batch_of_objects, batch_of_raw, complete_objects, complete_raw
from engine.failures import (
    CredentialFailure,
    PermissionMissing,
    StripeAccessError,
)
from engine.pager import Coverage, extract_events_of, extract_window
from engine.process_memory import hand_back_freed_memory
from engine.processes import this_process
from engine.progress import ProgressSink
from engine.streams import BALANCE_COLUMNS, StreamSpec
from engine.stripe_api import StripeAccount, verify_account
from engine.warehouse import (
    MergeCounts,
    StreamState,
    Warehouse,
    flag_unseen_as_deleted,
    in_transaction,
    insert_rows,
    merge_rows,
    record_start,
    save_state,
    save_states,
    saved_states,
)

EVENT_RETENTION = timedelta(days=30)
# Stripe keeps 30 days of events; refresh in full a little before that edge.
EVENT_SAFETY_MARGIN = timedelta(hours=6)
# Objects created in the last seconds may not be listed yet; the next run takes them.
SETTLE_SECONDS = 2
# A quiet stream's saved cursors move on once they are this old (seconds): each save was a
# commit per quiet client (on DuckLake a turn at the catalog), and an older cursor costs
# nothing but a wider events listing, well inside the 30 days Stripe keeps.
CURSOR_REFRESH = 6 * 3600
CHUNK_ROWS = 5_000
# A chunk also ends at this much raw JSON: 5,000 invoices with their lines were ~150 MB of
# text, and DuckDB staging them (typed columns, unnested lines) took a sync to 1.3 GB. At
# ~3 KB a charge, a chunk holds ~2,700 charges: 1M charges synced in 182 s at 361 MB with it
# (16 MB: 220 s, 395 MB, busier machine), invoices with 60 lines peaked 20-40 MB lower.
CHUNK_BYTES = 8 * 1024 * 1024
# Chunks handed to writers and not yet written, over the whole process (_PendingChunks).
PENDING_BYTES = 16 * 1024 * 1024
FLUSH_SECONDS = 5.0
# How long the chunk writer may keep the warehouse while chunks keep arriving.
HOLD_SECONDS = 2.0
READER_GAP_SECONDS = 0.1
_IDLE = object()
# Stripe's founding: where a first full listing starts when the account's age is unknown.
EPOCH_START = int(datetime(2010, 1, 1, tzinfo=UTC).timestamp())



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
    # Why the stream was not synced (a permission the key was accepted without).
    skipped: str | None = None

    @property
    def rows_landed(self) -> int:
        return self.inserted + self.updated

    @property
    def nothing_new(self) -> bool:
        """Checked, and nothing to land: no row written, no full listing, no failure."""
        return (self.rows_landed == 0 and self.deleted == 0 and self.error is None
                and self.skipped is None and self.full_refresh_reason is None)


@dataclass
class SyncReport:
    client_id: str
    account_id: str | None
    streams: dict[str, StreamResult] = field(default_factory=dict)
    balance_rows: int = 0
    balance_skipped: str | None = None
    requests: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> list[StripeAccessError]:
        return [r.error for r in self.streams.values() if r.error is not None]

    @property
    def nothing_new(self) -> bool:
        """No stream and not the balance had anything new: nothing was written."""
        return self.balance_rows == 0 and all(r.nothing_new for r in self.streams.values())


class _StreamLoader:
    """Lands one stream's objects for one client, chunk by chunk."""

    def __init__(
        self, spec: StreamSpec, client_id: str, warehouse: Warehouse, state: StreamState,
        result: StreamResult, synced_at: datetime, account: StripeAccount | None = None,
    ) -> None:
        self.spec = spec
        # Pages the lists a parent embeds only in part (engine/child_pages.py).
        self.account = account
        self.client_id = client_id
        self.warehouse = warehouse
        self.state = state
        self.result = result
        self.synced_at = synced_at
        # The client had no rows in the table when the listing began: nothing to replace.
        self.known_new = False

    def flush(self, rows: pa.Table, final: bool = False,
              conn: duckdb.DuckDBPyConnection | None = None) -> None:
        """Merge rows and save the state (cursor included) in one transaction."""
        if conn is None:
            with self.warehouse.writer() as own:
                self.flush(rows, final, own)
            return
        state, listed_since = self.state, None
        if final and state.full_started_at is not None:
            # A full listing has just completed: what it did not see is gone from Stripe.
            listed_since = state.full_started_at
            state = replace(state, full_started_at=None, last_full_sync=self.synced_at)
        counts, deleted = in_transaction(
            conn, lambda: self._write(conn, rows, state, listed_since))
        self.state.full_started_at = state.full_started_at
        self.state.last_full_sync = state.last_full_sync
        self.result.deleted += deleted
        self.result.inserted += counts.inserted
        self.result.updated += counts.updated
        self.result.created_cursor = self.state.created_cursor
        self.result.events_cursor = self.state.events_cursor

    def _write(self, conn: duckdb.DuckDBPyConnection, rows: pa.Table, state: StreamState,
               listed_since: datetime | None) -> tuple[MergeCounts, int]:
        """The transaction's work; it may run again (in_transaction), so it changes nothing
        outside the warehouse."""
        counts = merge_rows(conn, self.spec, rows, known_new=self.known_new)
        deleted = 0
        if listed_since is not None and self.spec.deletable:
            deleted = flag_unseen_as_deleted(conn, self.spec.table, self.client_id, listed_since)
        save_state(conn, state)
        return counts, deleted

    # Rows are stamped when their page arrived: a full listing flags as deleted only rows
    # stamped before it began, never one written meanwhile (by any run).
    # Lists a parent embeds only in part are paged to their end first, and lists kept apart
    # from the parent's raw cut out of it (engine/child_pages.py).
    def rows(self, raw_objects: list[bytes]) -> pa.Table:
        if self.account is not None and raw_objects:
            raw_objects = complete_raw(self.account, self.spec, raw_objects)
        return batch_of_raw(self.client_id, self.spec, raw_objects, datetime.now(UTC))

    def rows_of_objects(self, objects: list[dict], deleted_ids: frozenset[str]) -> pa.Table:
        if self.account is not None:
            complete_objects(self.account, self.spec, objects, deleted_ids)
        return batch_of_objects(self.client_id, self.spec, objects, datetime.now(UTC),
                                deleted_ids)


class _PendingChunks:
    """Bytes of chunks handed to writers and not yet written, over every stream and client
    of the process, under a limit: a chunk waits for room unless none is pending.

    Each stream lists ahead of its writer; with 16 streams waiting for the file's one
    writer, each with a chunk in hand and one queued, those chunks were most of a wide
    first sync's peak. Writers never wait for room, so what is pending always drains."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.changed = threading.Condition()

    def reserve(self, size: int) -> None:
        with self.changed:
            while self.total and self.total + size > self.limit:
                self.changed.wait()
            self.total += size

    def release(self, size: int) -> None:
        with self.changed:
            self.total -= size
            self.changed.notify_all()


PENDING_CHUNKS = _PendingChunks(PENDING_BYTES)


class _ChunkWriter:
    """Writes chunks in its own thread, in order, so fetching goes on while DuckDB works.

    At most `depth` chunks wait, and all writers' chunks together stay within
    PENDING_BYTES; the cursor given with a chunk is committed with it.
    """

    def __init__(self, loader: _StreamLoader, depth: int = 1) -> None:
        self.loader = loader
        self.chunks: queue.Queue[tuple[pa.Table, int, bool, int] | None] = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def submit(self, batches: list[pa.Table], cursor: int, final: bool = False) -> None:
        if self.error is not None:
            raise self.error
        rows = pa.concat_tables(batches) if batches else self.loader.rows([])
        del batches[:]  # the concatenated copy is all that is kept
        PENDING_CHUNKS.reserve(rows.nbytes)
        self.chunks.put((rows, cursor, final, rows.nbytes))

    def close(self) -> None:
        self.chunks.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        item = self.chunks.get()
        while item is not None:
            item = self._write_while_busy(item)
            if item is _IDLE:
                # Let waiting readers (the report page, widgets) in before taking it again.
                time.sleep(READER_GAP_SECONDS)
                item = self.chunks.get()

    def _write_while_busy(self, item: tuple[pa.Table, int, bool, int]) -> object:
        """Write chunks on one connection while more are waiting, for at most HOLD_SECONDS.

        Reopening DuckDB for every chunk cost a checkpoint each time; holding it briefly
        amortises that, and letting go within seconds keeps readers waiting little.
        Returns the next queue item (None: the end) or _IDLE.
        """
        current: tuple[pa.Table, int, bool, int] | None = item
        try:
            with self.loader.warehouse.writer() as conn:
                deadline = time.monotonic() + HOLD_SECONDS
                while current is not None:
                    rows, cursor, final, size = current
                    self.loader.state.created_cursor = cursor
                    self.loader.flush(rows, final=final, conn=conn)
                    current = None
                    PENDING_CHUNKS.release(size)
                    if time.monotonic() >= deadline or self.loader.warehouse.readers_waiting():
                        return _IDLE
                    try:  # go on only with a chunk already waiting: never hold the lock idle
                        current = self.chunks.get_nowait()
                    except queue.Empty:
                        return _IDLE
                return None
        except BaseException as error:  # handed to the consumer thread, which re-raises
            self.error = error
            if current is not None:
                PENDING_CHUNKS.release(current[3])
            while (left := self.chunks.get()) is not None:  # drain: the consumer never blocks
                PENDING_CHUNKS.release(left[3])
            return None


RESUMING = "resuming an unfinished full refresh"
EVENTS_TOO_OLD = "last sync is older than the 30 days of events Stripe keeps"
NO_EVENTS = "the key cannot read events, so changes come from a full listing"


def _plan(spec: StreamSpec, state: StreamState, hi: int, requested: bool
          ) -> tuple[str | None, bool]:
    """Why the stream is listed in full (None: incremental), and whether events come first.

    A full listing that a dead run left unfinished resumes where it stopped, after the
    events since it began: the rows it landed may have changed since.
    """
    oldest_usable = hi - (EVENT_RETENTION - EVENT_SAFETY_MARGIN).total_seconds()
    events_usable = not spec.event_types or (
        state.events_cursor is not None and state.events_cursor >= oldest_usable)
    has_events = bool(spec.event_types)
    if state.full_started_at is not None and events_usable:
        return RESUMING, has_events
    if requested:
        return "full refresh requested", False
    if state.created_cursor is None and state.full_started_at is None:
        return "first sync", False
    if not events_usable:
        return EVENTS_TOO_OLD, False
    return None, has_events


@dataclass
class _Stream:
    """One stream in a client's run: its loader, and how this run brings it up to date."""

    spec: StreamSpec
    loader: _StreamLoader
    reason: str | None  # why it is listed in full; None: incremental
    apply_events: bool
    events_lo: int = 0  # its events cursor: events before it were applied by an earlier run
    # Events applied but not yet landed: newest snapshot first, per object.
    seen: set[str] = field(default_factory=set)
    changed: list[dict] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)
    always_list: bool = False
    # A state was saved before this sync: rows land with their cursor in one transaction,
    # so a stream without one has no rows of the client yet.
    saved_before: bool = True
    # An event of another object said a new object of this stream may exist (new_with).
    hinted: bool = False
    # Objects another object's event changed without an event of their own (refetch_with).
    refetch: set[str] = field(default_factory=set)

    @property
    def needs_listing(self) -> bool:
        """Whether objects created since the cursor must be listed: always where events
        cannot be trusted this run (first, resumed or requested full listing, events too
        old or unreadable) or do not exist (balance transactions); else only when the
        stream had events since the last run. A stream with nothing new costs no request
        of its own; one with changes lists its new objects as they are now, so an object
        created with an event but changed without one (a card attached to a new customer)
        lands whole, as before the events listing was shared."""
        return (self.reason is not None or not self.spec.event_types or bool(self.seen)
                or self.hinted or self.always_list)

    def take(self, event: dict) -> None:
        obj = (event.get("data") or {}).get("object") or {}
        if obj.get("object") != self.spec.object_type or obj.get("id") in self.seen \
                or int(event.get("created") or 0) < self.events_lo:
            return
        self.seen.add(obj["id"])
        self.changed.append(obj)
        if event.get("type") in self.spec.deleted_event_types:
            self.deleted.add(obj["id"])

    def note_refetch(self, event: dict, named_in: str) -> None:
        obj = (event.get("data") or {}).get("object") or {}
        if isinstance(obj.get(named_in), str) and int(event.get("created") or 0) >= \
                self.events_lo:
            self.refetch.add(obj[named_in])

    def fetch_again(self, account: StripeAccount) -> None:
        """The objects named by other objects' events, as they are now (newer than any
        snapshot an event of their own carried this run)."""
        fetched = {object_id: account.get(f"{self.spec.endpoint}/{object_id}")
                   for object_id in sorted(self.refetch)}
        self.changed = [obj for obj in self.changed if obj.get("id") not in fetched]
        self.changed.extend(fetched.values())
        self.seen |= fetched.keys()
        self.refetch = set()

    def land_changed(self) -> None:
        """Land the events' objects taken so far, with the stream's state."""
        if self.changed:
            self.loader.flush(self.loader.rows_of_objects(self.changed, frozenset(self.deleted)))
            self.loader.result.deleted += len(self.deleted)
            self.changed, self.deleted = [], set()


@dataclass(frozen=True)
class _Start:
    """What a sync starts from, read in the session that records its start: each stream's
    saved state, the latest balance snapshot. One session, not four: a client with nothing
    new is mostly these fixed costs."""

    client_id: str
    saved: dict[str, StreamState]
    balance: dict[str, dict[str, int]]

    def state(self, stream: str) -> StreamState:
        return self.saved.get(stream) or StreamState(self.client_id, stream)


def _begin(warehouse: Warehouse, client_id: str, specs: list[StreamSpec]) -> _Start:
    """Say the sync began (said first: a sync killed outright records nothing else, the
    widgets then see it gone), and read what it starts from."""
    with warehouse.writer() as conn:
        record_start(conn, client_id, this_process())
        return _Start(client_id, saved_states(conn, client_id, [spec.name for spec in specs]),
                      _latest_balance_in(conn, client_id))


def _prepare(account: StripeAccount, warehouse: Warehouse, specs: list[StreamSpec],
             start: _Start, hi: int, full_refresh: bool) -> list[_Stream]:
    """Every stream's plan for this run, from its state at the start."""
    streams = []
    synced_at = datetime.now(UTC)
    for spec in specs:
        state = start.state(spec.name)
        result = StreamResult(spec.name, created_cursor=state.created_cursor,
                              events_cursor=state.events_cursor)
        loader = _StreamLoader(spec, account.client_id, warehouse, state, result, synced_at,
                               account)
        reason, apply_events = _plan(spec, state, hi, full_refresh)
        streams.append(_Stream(spec, loader, reason, apply_events,
                               events_lo=state.events_cursor or hi,
                               saved_before=spec.name in start.saved))
    return streams


def _apply_events(account: StripeAccount, streams: list[_Stream], hi: int,
                  accepted_missing: frozenset[str]) -> StripeAccessError | None:
    """One events listing for every stream that applies events (newest snapshot of every
    object changed since its cursor, deletions flagged), landed in chunks. Returns the
    failure that stopped it, if any; a key without event access lists in full instead."""
    applying = [stream for stream in streams if stream.apply_events]
    if not applying:
        return None
    by_type: dict[str, list[_Stream]] = {}
    hints: dict[str, list[_Stream]] = {}
    refetches: dict[str, list[tuple[_Stream, str]]] = {}
    for stream in applying:
        for type_ in stream.spec.event_types:
            by_type.setdefault(type_, []).append(stream)
        for type_ in stream.spec.new_with:
            hints.setdefault(type_, []).append(stream)
        for type_, named_in in stream.spec.refetch_with:
            refetches.setdefault(type_, []).append((stream, named_in))
    lo = min(stream.events_lo for stream in applying)
    type_sets = [(*s.spec.event_types, *s.spec.new_with, *(t for t, _ in s.spec.refetch_with))
                 for s in applying]
    try:
        for page in extract_events_of(account.tagged("events"), type_sets, lo, hi):
            for event in page:
                type_ = event.get("type") or ""
                for stream in by_type.get(type_, ()):
                    stream.take(event)
                for stream in hints.get(type_, ()):
                    stream.hinted = True
                for stream, named_in in refetches.get(type_, ()):
                    stream.note_refetch(event, named_in)
            for stream in applying:
                if len(stream.changed) >= CHUNK_ROWS:
                    stream.land_changed()
        for stream in applying:
            if stream.refetch:
                stream.fetch_again(account.tagged(stream.spec.name))
    except PermissionMissing as gap:
        if not gap.accepted(accepted_missing):
            raise
        for stream in applying:
            stream.reason = NO_EVENTS
    except CredentialFailure:
        raise
    except StripeAccessError as error:
        return error
    for stream in applying:
        stream.loader.result.events_applied = len(stream.seen)
    return None


def _start_listing(stream: _Stream, hi: int) -> None:
    """A new full listing covers objects created before `hi`: rows stamped earlier that it
    does not see again are gone from Stripe. Events from `hi` on carry the rest."""
    state = stream.loader.state
    if stream.reason not in (None, RESUMING):
        state.full_started_at = datetime.fromtimestamp(hi, UTC)
        state.created_cursor = None
    state.events_cursor = hi
    stream.loader.result.full_refresh_reason = stream.reason


def _land_without_listing(warehouse: Warehouse, applying: list[_Stream], hi: int) -> None:
    """Streams with nothing new since their cursors (no event, no listing needed): their
    cursors move to `hi` together, in one transaction, and nothing else is written.

    When no stream had events (a quiet client), they are saved only once CURSOR_REFRESH
    old: the next sync lists from them and finds the same nothing (one commit fewer a quiet
    client). Beside a stream with events they are saved as it is, so that every stream's
    cursor stays where the shared events listing starts."""
    quiet = [stream for stream in applying if not stream.needs_listing]
    save = len(quiet) < len(applying) or any(
        hi - min(s.events_lo, s.loader.state.created_cursor or hi) >= CURSOR_REFRESH
        for s in quiet)
    for stream in quiet:
        stream.loader.state.created_cursor = hi
        stream.loader.result.created_cursor = hi
        stream.loader.result.events_cursor = hi
    if quiet and save:
        with warehouse.writer() as conn:
            in_transaction(conn, lambda: save_states(conn, [s.loader.state for s in quiet]))


def _list_stream(account: StripeAccount, stream: _Stream, hi: int, options: _StreamOptions
                 ) -> StreamResult:
    """Land the events' objects still waiting, then list objects created since the cursor."""
    spec, loader = stream.spec, stream.loader
    account = account.tagged(spec.name)
    stream.land_changed()  # else the listing's flush saves the moved events cursor
    state = loader.state
    lo = state.created_cursor
    if lo is None:
        lo = min(options.account_created or EPOCH_START, hi)
    # Nothing to replace: no rows when the sync began (it holds the client's lock), and
    # none landed by its events since.
    loader.known_new = not stream.saved_before and loader.result.inserted == 0
    _list_created(account, loader, lo, hi, options.concurrency,
                  (options.chunk_rows, CHUNK_BYTES), options.progress)
    return loader.result


def _list_created(account: StripeAccount, loader: _StreamLoader, lo: int, hi: int,
                  concurrency: int, chunk_limits: tuple[int, int],
                  progress: ProgressSink | None) -> None:
    """List objects created in [lo, hi) and land them in chunks, the cursor with each.

    A chunk ends at `chunk_limits` = (objects, bytes of raw JSON), whichever comes first.

    If the listing fails for good, what it fetched up to the covered frontier still lands.
    """
    spec = loader.spec
    coverage = Coverage(lo)
    writer = _ChunkWriter(loader)
    chunk_rows, chunk_bytes = chunk_limits
    batches: list[pa.Table] = []
    buffered, buffered_bytes, submitted_cursor, last_flush = 0, 0, lo, time.monotonic()
    try:
        for page in extract_window(account, spec.endpoint, dict(spec.list_params), lo, hi,
                                   concurrency=concurrency):
            # Pages become Arrow rows of JSON text at once: no dicts are ever built.
            batches.append(loader.rows(page.raw_objects))
            buffered += len(page.raw_objects)
            buffered_bytes += batches[-1].nbytes
            for done in page.completed:
                coverage.add(*done)
            due = time.monotonic() - last_flush > FLUSH_SECONDS
            if (buffered >= chunk_rows or buffered_bytes >= chunk_bytes
                    or (due and coverage.frontier > submitted_cursor)):
                writer.submit(batches, coverage.frontier)
                submitted_cursor, batches, buffered, buffered_bytes = coverage.frontier, [], 0, 0
                last_flush = time.monotonic()
                if progress:
                    progress(account.client_id, spec.name, loader.result.rows_landed,
                             account.requests_by_tag.get(spec.name, 0))
    except StripeAccessError:
        if batches and writer.error is None:
            writer.submit(batches, coverage.frontier)
        raise
    else:
        # Saved even when nothing was found: the balance transactions' cursor is also how
        # far the reconciliation may judge the balance (engine/reconcile.py).
        writer.submit(batches, hi, final=True)
    finally:
        writer.close()


def snapshot_balance(account: StripeAccount, warehouse: Warehouse,
                     latest: dict[str, dict[str, int]] | None = None) -> int:
    """One row per currency: what is available and pending right now; nothing written when
    it is what the latest snapshot (`latest`, else read now) already says (a client with
    nothing new writes nothing)."""
    balance = account.tagged("balance").get("/v1/balance")
    captured_at = datetime.now(UTC).replace(microsecond=0)
    totals: dict[str, dict[str, int]] = {}
    for kind in ("available", "pending"):
        for entry in balance.get(kind) or []:
            currency = entry["currency"]
            totals.setdefault(currency, {"available": 0, "pending": 0})[kind] += entry["amount"]
    if latest is None:
        with warehouse.reader() as conn:
            latest = _latest_balance_in(conn, account.client_id)
    if not totals or totals == latest:
        return 0  # nothing new: the latest snapshot still says it all
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


def _latest_balance_in(conn: duckdb.DuckDBPyConnection, client_id: str
                       ) -> dict[str, dict[str, int]]:
    """The client's latest balance snapshot, as snapshot_balance totals it."""
    rows = conn.execute(
        "SELECT currency, available, pending FROM stripe.balance WHERE client_id = ? "
        "AND captured_at = (SELECT max(captured_at) FROM stripe.balance "
        "WHERE client_id = ?)", [client_id, client_id]).fetchall()
    return {currency: {"available": available, "pending": pending}
            for currency, available, pending in rows}


def sync_client(
    account: StripeAccount,
    warehouse: Warehouse,
    streams: Iterable[StreamSpec],
    *,
    expected_account_id: str | None = None,
    full_refresh: bool = False,
    include_balance: bool = True,
    concurrency: int = 24,
    progress: ProgressSink | None = None,
    chunk_rows: int = CHUNK_ROWS,
    accepted_missing: frozenset[str] = frozenset(),
    on_wait: Callable[[str], None] = lambda _: None,
    list_created: bool = False,
) -> SyncReport:
    """Check the key, then sync every stream side by side under the account's one pacer.

    One sync per client at a time: a second one (another process, another launch path)
    waits for the first, then runs incrementally on what it landed. A credential failure
    stops everything at once; any other stream failure lets the others finish and land,
    and is reported in `errors`. Permissions the key was knowingly connected without
    (`accepted_missing`) skip their stream instead of failing. `list_created`: every stream
    lists its new objects, for a Stripe imitation without creation events.
    """
    started = time.monotonic()
    hand_back_freed_memory()
    with warehouse.client_lock(account.client_id, on_wait=on_wait), \
            _failures_recorded(warehouse, account.client_id):
        specs = list(streams)
        start = _begin(warehouse, account.client_id, specs)
        info = verify_account(account, expected_account_id)
        report = SyncReport(account.client_id, info.get("id"))
        options = _StreamOptions(full_refresh, info.get("created"), concurrency, progress,
                                 chunk_rows, accepted_missing, list_created=list_created)
        with ThreadPoolExecutor(max_workers=1) as beside:  # the balance beside the streams
            balance = beside.submit(_balance_unless_accepted_missing, account, warehouse,
                                    start, accepted_missing) if include_balance else None
            report.streams = _sync_streams(account, warehouse, specs, start, options)
            if balance is not None:
                report.balance_rows, report.balance_skipped = balance.result()
        if report.errors:
            warehouse.record_failure(account.client_id, "; ".join(
                error.message for error in report.errors))
    report.requests = account.requests
    report.seconds = time.monotonic() - started
    return report


INTERRUPTED = "The sync was interrupted before it finished."
STOPPED = "The sync stopped on an error before it finished."


@contextmanager
def _failures_recorded(warehouse: Warehouse, client_id: str) -> Iterator[None]:
    """A sync that ends in any way but success (a Stripe error, any other error, Ctrl-C) is
    remembered, so the widgets built before it say `stale`. The record holds no error text
    beyond Stripe's own message: the client reads it."""
    try:
        yield
    except BaseException as error:
        if isinstance(error, StripeAccessError):
            message = error.message
        else:
            message = STOPPED if isinstance(error, Exception) else INTERRUPTED
        # If even that fails, the start record tells once this process has ended.
        with suppress(Exception):
            warehouse.record_failure(client_id, message)
        raise


@dataclass(frozen=True)
class _StreamOptions:
    full_refresh: bool
    account_created: int | None
    concurrency: int
    progress: ProgressSink | None
    chunk_rows: int
    accepted_missing: frozenset[str]
    now: float | None = None
    # Every stream lists what was created since its cursor, events or not: for a Stripe
    # implementation that emits no creation events (localstripe's charges and refunds).
    list_created: bool = False


def _run_listing(account: StripeAccount, stream: _Stream, hi: int, options: _StreamOptions,
                 failed: threading.Event) -> StreamResult:
    """One stream's listing in a worker: a credential failure stops the others (`failed`);
    any other Stripe failure is the stream's result, the others land."""
    name = stream.spec.name
    if failed.is_set():
        return StreamResult(name)
    started = time.monotonic()
    try:
        result = _list_stream(account, stream, hi, options)
    except PermissionMissing as gap:
        if gap.accepted(options.accepted_missing):
            return StreamResult(name, skipped=gap.message)
        failed.set()
        raise
    except CredentialFailure:
        failed.set()
        raise
    except StripeAccessError as error:
        return StreamResult(name, error=error)
    result.requests = account.requests_by_tag.get(name, 0)
    result.seconds = time.monotonic() - started
    if options.progress:
        options.progress(account.client_id, name, result.rows_landed, result.requests)
    return result


def _sync_streams(account: StripeAccount, warehouse: Warehouse, specs: list[StreamSpec],
                  start: _Start, options: _StreamOptions) -> dict[str, StreamResult]:
    """The events of every stream in one listing, and the created-listings that are needed,
    side by side: balance transactions (no events) and streams listed in full start at
    once, beside the events; a stream resuming a full listing lists after its events."""
    hi = int(options.now if options.now is not None else time.time()) - SETTLE_SECONDS
    streams = _prepare(account, warehouse, specs, start, hi, options.full_refresh)
    for stream in streams:
        stream.always_list = options.list_created
    failed = threading.Event()

    def run(stream: _Stream) -> StreamResult:
        return _run_listing(account, stream, hi, options, failed)

    results: dict[str, StreamResult] = {}
    futures: dict[str, Future[StreamResult]] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(streams))) as pool:
        for stream in streams:
            if not stream.apply_events:  # needs no events: lists at once
                _start_listing(stream, hi)
                futures[stream.spec.name] = pool.submit(run, stream)
        applying = [stream for stream in streams if stream.apply_events]
        started = time.monotonic()
        try:
            failure = _apply_events(account, applying, hi, options.accepted_missing)
        except BaseException:
            failed.set()
            raise
        if failure is not None:  # those streams wait for the next run; the others go on
            results.update({s.spec.name: StreamResult(s.spec.name, error=failure)
                            for s in applying})
            applying = []
        for stream in applying:
            _start_listing(stream, hi)
        _land_without_listing(warehouse, applying, hi)
        for stream in applying:
            if stream.needs_listing:
                futures[stream.spec.name] = pool.submit(run, stream)
            else:
                stream.loader.result.seconds = time.monotonic() - started
                results[stream.spec.name] = stream.loader.result
        for name, future in futures.items():
            results[name] = future.result()
    return {spec.name: results[spec.name] for spec in specs}


def _balance_unless_accepted_missing(account: StripeAccount, warehouse: Warehouse,
                                     start: _Start, accepted_missing: frozenset[str]
                                     ) -> tuple[int, str | None]:
    try:
        return snapshot_balance(account, warehouse, start.balance), None
    except PermissionMissing as gap:
        if not gap.accepted(accepted_missing):
            raise
        return 0, gap.message
