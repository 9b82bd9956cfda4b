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


def extract_window(
    account: StripeAccount,
    endpoint: str,
    params: dict[str, Any],
    lo: int,
    hi: int,
    concurrency: int = 24,
    max_buffered_pages: int = 24,
) -> Iterator[PageResult]:
    """Yield every object created in [lo, hi), page by page, with completed ranges."""
    work: queue.Queue[_Slice] = queue.Queue()
    results: queue.Queue[Any] = queue.Queue(maxsize=max_buffered_pages)
    lock = threading.Lock()
    outstanding = [1]  # slices queued or being fetched
    stop = threading.Event()
    work.put(_Slice(lo, hi))

    def fetch(piece: _Slice) -> None:
        query = {**params, "limit": PAGE_SIZE, "created": {"gte": piece.lo, "lt": piece.hi}}
        if piece.starting_after:
            query["starting_after"] = piece.starting_after
        page = account.get_page(endpoint, query)
        data = page.raw_objects
        if not page.has_more or not data:
            results.put(PageResult(data, [(piece.lo, piece.hi)]))
            with lock:
                outstanding[0] -= 1
            return
        oldest = int(page.oldest_created or piece.lo)
        newest = int(page.newest_created or oldest)
        # Objects per second in this page tells how many pages the rest holds; split only
        # into parts worth a few pages each, since every part ends with a partial page.
        density = len(data) / max(1, newest - oldest + 1)
        pages_left = density * (oldest - piece.lo) / PAGE_SIZE
        with lock:
            # Workers neither fetching nor with a slice waiting; busy ones need no new work.
            idle = concurrency - outstanding[0]
            parts = max(0, min(idle, int(pages_left // MIN_PAGES_PER_SLICE)))
            pieces = _split(piece.lo, oldest, idle=parts)
            outstanding[0] += len(pieces) - 1
        # The slice carries on from its last object, over the newest part only...
        work.put(_Slice(pieces[-1][0], piece.hi, page.last_id))
        # ...and the older parts, not yet touched, become slices of their own.
        for part_lo, part_hi in pieces[:-1]:
            work.put(_Slice(part_lo, part_hi))
        results.put(PageResult(data))

    failures: list[BaseException] = []

    def worker() -> None:
        while not stop.is_set():
            try:
                piece = work.get(timeout=0.05)
            except queue.Empty:
                with lock:
                    if outstanding[0] == 0:
                        return
                continue
            try:
                fetch(piece)
            except BaseException as error:  # the consumer re-raises it, after the pages
                failures.append(error)
                stop.set()  # no new slices; fetches under way still deliver their pages
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    for thread in threads:
        thread.start()

    def closer() -> None:
        for thread in threads:
            thread.join()
        results.put(failures[0] if failures else _DONE)

    threading.Thread(target=closer, daemon=True).start()
    try:
        while True:
            item = results.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # Unblock workers waiting on a full results queue.
        while not results.empty():
            results.get_nowait()


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


def extract_events(
    account: StripeAccount, types: tuple[str, ...], lo: int, hi: int
) -> Iterator[list[dict]]:
    """Pages of events of the given types created in [lo, hi), newest first."""
    if len(types) > 20:  # Stripe's limit; one request keeps the newest-first order whole
        raise ValueError("Stripe takes at most 20 event types per request")
    query = {"types": list(types), "created": {"gte": lo, "lt": hi}}
    yield from account.iter_pages("/v1/events", query)
