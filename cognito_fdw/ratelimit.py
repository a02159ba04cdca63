"""A client-side request-rate limit, shared by every thread of one backend.

Cognito's quotas are per account and region, shared with every application using the
pool, and exceeding them answers ``TooManyRequestsException``.  So the wrapper paces its
own requests with a sliding window: a request may start only when fewer than ``rate``
requests started in the second before it.  No one-second window ever holds more than
``rate`` requests, however many workers share the limiter, and a short burst (an IN list,
the first rows of a join) is not slowed down at all.

The limit is per backend (database connection): PostgreSQL backends are separate
processes, so N connections scanning at once may together send N times the rate.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

WINDOW_SECONDS = 1.0


class RateLimiter:
    """Lets at most ``rate`` requests start within any one second; thread-safe."""

    def __init__(
        self,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._starts: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a start time for one request; return how long the caller must wait for it."""
        with self._lock:
            now = self._clock()
            slot = now
            if len(self._starts) >= self.rate:
                # The window opens when the request `rate` places back is a second old.
                slot = max(now, self._starts[-self.rate] + WINDOW_SECONDS)
            self._starts.append(slot)
            while len(self._starts) > self.rate:
                self._starts.popleft()
            return slot - now

    def acquire(self) -> None:
        """Block until this caller may send one request."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


_limiters: dict[tuple, RateLimiter] = {}
_lock = threading.Lock()


def limiter_for(key: tuple, rate: int) -> RateLimiter:
    """The backend's limiter for one endpoint and account (``key``) at ``rate``."""
    with _lock:
        limiter = _limiters.get((key, rate))
        if limiter is None:
            limiter = _limiters[(key, rate)] = RateLimiter(rate)
        return limiter
