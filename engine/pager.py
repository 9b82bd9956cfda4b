"""Paging a Stripe list over a `created` window, in parallel time slices.

A window [lo, hi) starts as one slice. When a page says there is more and workers
are idle, the rest of the slice is split by time so every worker has a share;
dense periods keep splitting, empty windows cost one request. Each result says
which ranges are now complete, so the caller can move its cursor only over ranges
that have fully landed. Nothing here knows about DuckDB.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.stripe_api import PAGE_SIZE, StripeAccount


@dataclass
class _Slice:
    lo: int  # created >= lo
    hi: int  # created < hi
    starting_after: str | None = None


@dataclass
class PageResult:
    raw_objects: list[bytes]  # each object's JSON text, as Stripe sent it
    completed: list[tuple[int, int]] = field(default_factory=list)


class Coverage:
    """Completed [lo, hi) ranges; `frontier` is how far the window is complete from its start."""

    def __init__(self, start: int) -> None:
        self.frontier = start
        self._pending: list[tuple[int, int]] = []

    def add(self, lo: int, hi: int) -> None:
        self._pending.append((lo, hi))
        self._pending.sort()
        while self._pending and self._pending[0][0] <= self.frontier:
            self.frontier = max(self.frontier, self._pending.pop(0)[1])


_DONE = object()
# A slice is worth splitting off only if it holds at least this many pages.
MIN_PAGES_PER_SLICE = 4
# Pages fetched and not yet taken by the caller, plus those being fetched (each counted as
# large as the largest page so far), stay under this many bytes of JSON: a page of 100
# charges is ~0.3 MB, so all 24 workers fetch at once; a page of invoices with 60 lines
# each is ~7 MB: 24 of them in flight and 24 waiting were ~300 MB of a sync's peak.
MAX_BUFFERED_BYTES = 8 * 1024 * 1024


def extract_window(
    account: StripeAccount,
    endpoint: str,
    params: dict[str, Any],
    lo: int,
    hi: int,
    concurrency: int = 24,
    max_buffered_pages: int = 24,
    max_buffered_bytes: int | None = None,
) -> Iterator[PageResult]:
    """Yield every object created in [lo, hi), page by page, with completed ranges.

    At most `max_buffered_pages` pages wait for the caller, and fewer requests are in
    flight when pages are large (`max_buffered_bytes`). If a slice fails for good, the
    pages fetched meanwhile come first, then the error.
    """
    listing = _SlicedListing(account, endpoint, params, max(1, concurrency), max_buffered_pages)
    listing.budget = _ByteBudget(max_buffered_bytes or MAX_BUFFERED_BYTES)
    return listing.pages(lo, hi)


class _ByteBudget:
    """Bytes of pages held (fetched, not yet taken) and pages in flight, under a limit.

    A fetch starts only if the pages held, those in flight and one more, each as large as
    the largest page so far, fit; one fetch may always start when nothing is held."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.in_flight = 0
        self.largest = 0
        self.changed = threading.Condition()

    def start_fetch(self, stop: threading.Event) -> None:
        with self.changed:
            while not stop.is_set() and not self._fits():
                self.changed.wait(0.5)
            self.in_flight += 1

    def _fits(self) -> bool:
        if self.in_flight == 0 and self.held == 0:
            return True
        return self.held + (self.in_flight + 1) * self.largest <= self.limit

    def fetched(self, size: int | None) -> None:
        """A fetch ended: `size` bytes now held (None: it failed, nothing held)."""
        with self.changed:
            self.in_flight -= 1
            if size is not None:
                self.held += size
                self.largest = max(self.largest, size)
            self.changed.notify_all()

    def taken(self, size: int) -> None:
        with self.changed:
            self.held -= size
            self.changed.notify_all()


class _SlicedListing:
    """Workers take slices from a queue; a page that says there is more re-queues the rest
    of its slice, split by time when workers are idle. The workers stop when no slice is
    left or one fails for good."""

    def __init__(self, account: StripeAccount, endpoint: str, params: dict[str, Any],
                 concurrency: int, max_buffered_pages: int) -> None:
        self.account, self.endpoint, self.params = account, endpoint, params
        self.concurrency = concurrency
        self.work: queue.Queue[_Slice | None] = queue.Queue()  # None: stop working
        self.results: queue.Queue[Any] = queue.Queue(maxsize=max_buffered_pages)
        self.lock = threading.Lock()
        self.outstanding = 0  # slices queued or being fetched
        self.stop = threading.Event()
        self.failures: list[BaseException] = []
        self.budget = _ByteBudget(MAX_BUFFERED_BYTES)  # extract_window sets the caller's

    def pages(self, lo: int, hi: int) -> Iterator[PageResult]:
        self._add([_Slice(lo, hi)])
        workers = [threading.Thread(target=self._work, daemon=True)
                   for _ in range(self.concurrency)]
        for worker in workers:
            worker.start()
        threading.Thread(target=self._close_after, args=(workers,), daemon=True).start()
        try:
            while (item := self.results.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                self.budget.taken(_size(item))
                yield item
        finally:
            self.stop.set()
            self._release_workers()
            while not self.results.empty():  # unblock workers waiting on a full queue
                self.results.get_nowait()

    def _work(self) -> None:
        while (piece := self.work.get()) is not None:
            try:
                if not self.stop.is_set():
                    self._fetch(piece)
            except BaseException as error:  # the consumer re-raises it, after the pages
                self.failures.append(error)
                self.stop.set()  # no new slices; fetches under way still deliver their pages
                self._release_workers()
                return
            finally:
                self._done_with_one()

    def _fetch(self, piece: _Slice) -> None:
        query = {**self.params, "limit": PAGE_SIZE, "created": {"gte": piece.lo, "lt": piece.hi}}
        if piece.starting_after:
            query["starting_after"] = piece.starting_after
        self.budget.start_fetch(self.stop)
        try:
            page = self.account.get_page(self.endpoint, query)
        except BaseException:
            self.budget.fetched(None)
            raise
        data = page.raw_objects
        self.budget.fetched(sum(map(len, data)))
        if not page.has_more or not data:
            self.results.put(PageResult(data, [(piece.lo, piece.hi)]))
            return
        oldest = int(page.oldest_created or piece.lo)
        newest = int(page.newest_created or oldest)
        # Objects per second in this page tells how many pages the rest holds; split only
        # into parts worth a few pages each, since every part ends with a partial page.
        density = len(data) / max(1, newest - oldest + 1)
        pages_left = density * (oldest - piece.lo) / PAGE_SIZE
        with self.lock:  # workers neither fetching nor with a slice waiting
            idle = self.concurrency - self.outstanding
        parts = max(0, min(idle, int(pages_left // MIN_PAGES_PER_SLICE)))
        pieces = _split(piece.lo, oldest, idle=parts)
        # The slice carries on from its last object over the newest part; the older
        # parts, not yet touched, become slices of their own.
        self._add([_Slice(pieces[-1][0], piece.hi, page.last_id),
                   *(_Slice(part_lo, part_hi) for part_lo, part_hi in pieces[:-1])])
        self.results.put(PageResult(data))

    def _add(self, pieces: list[_Slice]) -> None:
        with self.lock:
            self.outstanding += len(pieces)
        for piece in pieces:
            self.work.put(piece)

    def _done_with_one(self) -> None:
        with self.lock:
            self.outstanding -= 1
            finished = self.outstanding == 0
        if finished:
            self._release_workers()

    def _release_workers(self) -> None:
        for _ in range(self.concurrency):
            self.work.put(None)

    def _close_after(self, workers: list[threading.Thread]) -> None:
        for worker in workers:
            worker.join()
        self.results.put(self.failures[0] if self.failures else _DONE)


def _size(page: PageResult) -> int:
    return sum(map(len, page.raw_objects))


def _split(lo: int, oldest: int, idle: int) -> list[tuple[int, int]]:
    """Split [lo, oldest] (still to fetch) into up to `idle`+1 time ranges, oldest first.

    The last range keeps `oldest` itself, so the slice's `starting_after` stays valid.
    """
    parts = max(1, min(idle + 1, oldest - lo))
    if parts == 1:
        return [(lo, oldest + 1)]
    step = (oldest - lo) / parts
    bounds = [lo + int(step * i) for i in range(parts)] + [oldest + 1]
    ranges = [(bounds[i], bounds[i + 1]) for i in range(parts)]
    return [r for r in ranges if r[1] > r[0]]


MAX_EVENT_TYPES = 20  # Stripe's limit of `types[]` per request


def extract_events(
    account: StripeAccount, types: tuple[str, ...], lo: int, hi: int
) -> Iterator[list[dict]]:
    """Pages of events of the given types created in [lo, hi), newest first."""
    if len(types) > MAX_EVENT_TYPES:  # one request keeps the newest-first order whole
        raise ValueError("Stripe takes at most 20 event types per request")
    query = {"types": list(types), "created": {"gte": lo, "lt": hi}}
    yield from account.iter_pages("/v1/events", query)


def extract_events_of(
    account: StripeAccount, type_sets: list[tuple[str, ...]], lo: int, hi: int
) -> Iterator[list[dict]]:
    """Pages of the events of several streams created in [lo, hi), in as few requests as
    Stripe allows. Each stream's events come in one newest-first order (its newest
    snapshot of an object is the first one seen); the caller keeps the types it wants.

    Up to 20 types: one filtered listing. More: one unfiltered page first, which covers a
    quiet window (a client with nothing new costs one request); a busy window is then
    listed by groups of streams of up to 20 types, not paying for events of other types.
    """
    union = tuple(sorted({t for types in type_sets for t in types}))
    if len(union) <= MAX_EVENT_TYPES:
        yield from extract_events(account, union, lo, hi)
        return
    window = {"created": {"gte": lo, "lt": hi}}
    first = account.get("/v1/events", {"limit": PAGE_SIZE, **window})
    groups = event_type_groups(type_sets)
    if not first.get("has_more") or groups is None:
        # Quiet, or a stream alone has more types than a request takes: all events.
        if first.get("data"):
            yield first["data"]
        if first.get("has_more") and first.get("data"):
            yield from account.iter_pages(
                "/v1/events", {**window, "starting_after": first["data"][-1]["id"]})
        return
    for group in groups:
        yield from extract_events(account, group, lo, hi)


def event_type_groups(type_sets: list[tuple[str, ...]]) -> list[tuple[str, ...]] | None:
    """Streams' event types packed into requests of up to 20 types, a stream's types never
    split (its events must keep one order); None when a stream alone has more than 20."""
    groups: list[set[str]] = []
    for types in sorted(type_sets, key=len, reverse=True):
        if len(set(types)) > MAX_EVENT_TYPES:
            return None
        home = next((g for g in groups if len(g | set(types)) <= MAX_EVENT_TYPES), None)
        if home is None:
            groups.append(set(types))
        else:
            home.update(types)
    return [tuple(sorted(group)) for group in groups]
