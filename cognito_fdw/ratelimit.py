"""A client-side request-rate limit, shared by every thread of one backend.

Cognito's quotas are per account and region, shared with every application using the
pool, and exceeding them answers ``TooManyRequestsException``.  So the wrapper paces its
own requests: each request takes the next free slot on a timeline whose slots are
``1/rate`` seconds apart (a token bucket holding one token).  No burst is allowed, so no
one-second window ever holds more than ``rate`` requests, however many workers share it.

The limit is per backend (database connection): PostgreSQL backends are separate
processes, so N connections scanning at once may together send N times the rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Hands out request slots at most ``rate`` per second; thread-safe."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take the next slot; return how long the caller must wait for it."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
            return slot - now

    def acquire(self) -> None:
        """Block until this caller may send one request."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


_limiters: dict[tuple, RateLimiter] = {}
_lock = threading.Lock()


def limiter_for(key: tuple, rate: float) -> RateLimiter:
    """The backend's limiter for one endpoint and account (``key``) at ``rate``."""
    with _lock:
        limiter = _limiters.get((key, rate))
        if limiter is None:
            limiter = _limiters[(key, rate)] = RateLimiter(rate)
        return limiter
