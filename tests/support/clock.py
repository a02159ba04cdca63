"""A clock for the rate limiter's tests: time moves only when a test moves it or a wait sleeps."""

from __future__ import annotations


class FakeClock:
    """A clock that only moves when told to, or when a wait sleeps on it: pass it as the
    limiter's ``clock`` and its :meth:`sleep` as ``sleep``; ``sleeps`` lists every wait."""

    def __init__(self, now=1000.0):
        self.now = now
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds, stopped=lambda: False):
        self.sleeps.append(seconds)
        self.now += seconds
