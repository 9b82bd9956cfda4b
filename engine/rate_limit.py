"""Pacing for one Stripe account (a token bucket that backs off on 429 and recovers), and
the backoff between attempts of one request."""

from __future__ import annotations

import random
import threading
import time

# Stripe's documented read limits per account.
LIVE_REQUESTS_PER_SECOND = 100.0
TEST_REQUESTS_PER_SECOND = 25.0


class AdaptiveRateLimiter:
    """Token bucket shared by every thread fetching for one account.

    On a 429 the rate halves; it then climbs back by `recovery_per_second` each second
    without a 429, never above the configured ceiling.
    """

    def __init__(
        self, requests_per_second: float, burst: float | None = None,
        floor: float = 1.0, recovery_per_second: float | None = None,
    ) -> None:
        self.ceiling = requests_per_second
        self.rate = requests_per_second
        self.floor = min(floor, requests_per_second)
        # Back to the ceiling within about ten seconds without a 429.
        self.recovery_per_second = recovery_per_second or requests_per_second / 10
        self.capacity = burst if burst is not None else max(1.0, requests_per_second / 10)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._last_throttle = 0.0
        self._lock = threading.Lock()
        self.throttled = 0

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                self._recover(now)
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            time.sleep(wait)

    def on_throttled(self) -> None:
        with self._lock:
            self.throttled += 1
            self.rate = max(self.floor, self.rate / 2)
            self._tokens = min(self._tokens, 0.0)
            self._last_throttle = time.monotonic()

    def _recover(self, now: float) -> None:
        if self.rate < self.ceiling and now - self._last_throttle > 1.0:
            elapsed = now - max(self._last_throttle, self._updated)
            self.rate = min(self.ceiling, self.rate + self.recovery_per_second * max(elapsed, 0))


class Backoff:
    """When to try one request again: exponential delays with jitter, within a time budget.

    Delays double from `first` up to `cap`, each drawn in [half, whole] so that threads
    failing together do not retry together. A server's own Retry-After is a floor.
    """

    def __init__(self, budget: float, first: float = 0.25, cap: float = 5.0) -> None:
        self.budget = budget
        self.started = time.monotonic()
        self.first = first
        self.cap = cap
        self.attempts = 1  # the first try has been made when a delay is asked for

    def next_delay(self, at_least: float = 0.0) -> float | None:
        """Seconds to wait before the next attempt, or None once the budget is spent."""
        remaining = self.started + self.budget - time.monotonic()
        if remaining <= 0:
            return None
        base = min(self.cap, self.first * 2 ** (self.attempts - 1))
        self.attempts += 1
        return min(remaining, max(at_least, random.uniform(base / 2, base)))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started
