"""A client-side request-rate limit: at most ``rate`` requests sent in any window.

Cognito's quotas are per account and region, shared with every application using the
pool, and exceeding them answers ``TooManyRequestsException``.  So the wrapper paces its
own requests: one is *sent* only while fewer than ``rate`` were sent in the window before
it (a second, plus a margin for the way to Cognito, so that they also arrive at most
``rate`` in any second).  Each request goes through two steps on one window:

1. :meth:`RateLimiter.reserve` gives it a slot in line, first come, first served: at once
   while the window has room (a short burst, an IN list or the first rows of a join, is
   not slowed down at all), otherwise paced evenly, 1/rate of a window after the slot
   before it.
2. At the moment it is sent (botocore's ``before-send``, once it is built and signed),
   :meth:`Ticket.wait` sleeps until the slot and :meth:`Ticket.start` records the send
   time itself, only while the window of *send times* has room (else it waits for it).  A
   thread that sends late (after the GIL, on a busy CPU) therefore never lands within a
   window of the request ``rate`` places before it: the margin only has to cover the way
   from the send to Cognito, not the wrapper's own delays.

A reservation never used (a cancel, the deadline, a scan that ended) is released: it holds
up nobody.  The window of every backend of the server is one file (:mod:`cognito_fdw.aws.quota`);
here it may also be the process's own (outside a backend: the CLI, unit tests).

**Scan workers and the backend's thread.**  The backend's thread holds the GIL whenever it is in
PostgreSQL (docs/multicorn.md M8: threads run only while the backend is in Python): between the rows
of a scan, while a cursor waits for its next FETCH, and after the statement.  A worker thread frozen
there would keep whatever it held: its reservations, or the shared file's lock, which every backend
then waits for.  So a scan's workers take their turns within a :class:`Scope`: they touch the window
only under its lock, which the backend's thread holds whenever it leaves Python
(:meth:`Scope.outside`), and not at all once the scan ended (:meth:`Scope.close` releases what they
reserved).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..errors import CognitoFdwError
from ..pg import backend

WINDOW_SECONDS = 1.0
# Between a request's send (recorded by Ticket.start, after signing) and its arrival at
# Cognito lie the network and the far side's own scheduling, different for every request.
# Sends a second apart would let a slow request and a prompt one a second after it land in
# one second at Cognito; a window this much longer keeps the arrivals within the rate too,
# while no request takes this much longer on the way than the one `rate` places after it.
# Measured from send to the kernel's arrival time at the benchmark's proxy, with eight
# sessions at a load average of 4 to 6 on two CPUs: 99 % within 15 ms, the slowest 23 ms.
# A full window leaves 1/1.05 = 95 % of the rate.
ARRIVAL_MARGIN_SECONDS = 0.05
SPACING_SECONDS = WINDOW_SECONDS + ARRIVAL_MARGIN_SECONDS
MAX_RATE = 1000  # the option's upper bound; only the last MAX_RATE sends can matter
MAX_WAITING = 4096  # reservations kept: far more than sessions x scan workers
_POLL_SECONDS = 0.05
T = TypeVar("T")


class Abandoned(CognitoFdwError):
    """A wait for the rate limit ended because its request is no longer wanted."""


def next_slot(starts: list[float], now: float, rate: int) -> float:
    """When a request reserved at ``now`` may start, given the window's ascending ``starts``
    (send times and slots not yet sent).

    Never before the last slot handed out (first come, first served), and never while
    ``rate`` requests started within the second (and margin) before it: the window opens
    when the request ``rate`` places back is SPACING_SECONDS old.  A request that has to
    wait anyway also keeps 1/rate of a spacing after the one before it: a window that
    stays full is filled evenly, not a whole burst at each spacing.
    """
    slot = max(now, starts[-1]) if starts else now
    if len(starts) >= rate:
        slot = max(slot, starts[-rate] + SPACING_SECONDS)
    if slot > now:
        slot = max(slot, starts[-1] + SPACING_SECONDS / rate)
    return slot


@dataclasses.dataclass
class Window:
    """The state: send times (ascending) and the reservations not yet sent (``(slot,
    token)``, ascending by slot).  Pure: the caller supplies the clock."""

    sent: list[float] = dataclasses.field(default_factory=list)
    waiting: list[tuple[float, int]] = dataclasses.field(default_factory=list)

    def reserve(self, now: float, rate: int, token: int) -> float:
        """Add a reservation for ``token``; its slot (see :func:`next_slot`)."""
        starts = sorted(self.sent + [slot for slot, _ in self.waiting])
        slot = next_slot(starts, now, rate)
        self.waiting.append((slot, token))  # no earlier than any slot: the list stays sorted
        return slot

    def start(self, now: float, rate: int, token: int) -> float:
        """Record a send at ``now`` and drop the reservation ``token``: 0.0.  While
        ``rate`` sends already lie within SPACING_SECONDS before ``now``, change nothing
        and return how long to wait for the oldest of them to leave the window."""
        recent = [s for s in self.sent if s > now - SPACING_SECONDS]
        if len(recent) >= rate:
            return recent[-rate] + SPACING_SECONDS - now
        self.release(token)
        self.sent.append(max(now, self.sent[-1]) if self.sent else now)
        return 0.0

    def release(self, *tokens: int) -> None:
        self.waiting = [entry for entry in self.waiting if entry[1] not in tokens]

    def prune(self, now: float) -> None:
        """Drop what can shape no later slot or send: anything a window old (a reservation
        that old belongs to a request that is late or to a process that died)."""
        horizon = now - SPACING_SECONDS
        self.sent = [s for s in self.sent[-MAX_RATE:] if s > horizon]
        self.waiting = [entry for entry in self.waiting if entry[0] > horizon][-MAX_WAITING:]


def cancellable_sleep(seconds: float, stopped: Callable[[], bool] = lambda: False) -> None:
    """Sleep, but raise :class:`backend.Cancelled` as soon as the statement is cancelled,
    and :class:`Abandoned` as soon as ``stopped()`` is true.

    Slots may be seconds away when many backends scan at once; a cancel, ``statement_timeout`` or
    the end of the scan must not wait for them.  Reading the cancel flags is a memory read, safe
    from any thread (docs/multicorn.md H8: no PostgreSQL call off the backend thread).
    """
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if backend.cancel_pending():
            raise backend.Cancelled(
                "canceling statement: cognito_fdw stopped waiting for its request-rate slot",
                hint="The statement was cancelled (pg_cancel_backend, statement_timeout or "
                "shutdown) while it waited under max_requests_per_second.",
            )
        if stopped():
            raise Abandoned(
                "cognito_fdw stopped waiting for its request-rate slot: the request is no "
                "longer wanted (its scan ended)"
            )
        time.sleep(min(left, _POLL_SECONDS))


class Scope:
    """The turns taken by one scan's worker threads (see the module docstring).

    Made and closed by the backend's thread; workers enter it with :func:`scoped`.
    ``stopped`` is set when the scan ends: waits end, no window is touched any more.
    """

    def __init__(self):
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._reserved: dict[RateLimiter, set[int]] = {}  # tokens not yet sent or released

    @contextlib.contextmanager
    def outside(self) -> Iterator[None]:
        """Around anything of the backend's thread that leaves Python (a row returned to
        PostgreSQL, a NOTICE): no worker is within the window meanwhile."""
        with self._lock:
            yield

    @contextlib.contextmanager
    def _entered(self, limiter: RateLimiter) -> Iterator[set[int]]:
        with self._lock:
            if self.stopped.is_set():
                raise Abandoned("cognito_fdw: the scan ended; its workers take no more turns")
            if limiter not in self._reserved:
                self._reserved[limiter] = set()
            yield self._reserved[limiter]

    def close(self) -> None:
        """The scan ended (backend's thread): its workers' reservations are released now,
        and no worker touches a window from here on."""
        self.stopped.set()
        with self._lock:
            for limiter, tokens in self._reserved.items():
                if tokens:
                    limiter._apply(lambda w, now, tokens=tuple(tokens): w.release(*tokens))
            self._reserved.clear()


_scope = threading.local()


@contextlib.contextmanager
def scoped(scope: Scope | None) -> Iterator[None]:
    """Within the block, this (worker) thread's reservations belong to ``scope`` (None:
    to no scope, as on the backend's own thread)."""
    previous = getattr(_scope, "current", None)
    _scope.current = scope
    try:
        yield
    finally:
        _scope.current = previous


class Ticket:
    """One request's reservation: :meth:`wait` for its slot, :meth:`start` when it is sent,
    :meth:`release` when it will not be (a no-op after start).  Thread-safe: a request is
    reserved in one thread and may be sent from another."""

    def __init__(
        self, limiter: RateLimiter, slot: float, token: int, reserved_at: float, scope: Scope | None
    ):
        self.limiter = limiter
        self.slot = slot
        self.token = token
        self.delay = slot - reserved_at  # how long the reservation had to wait, seconds
        self.scope: Scope | None = scope
        self.state = "reserved"  # then "started" or "released"
        self._lock = threading.Lock()

    def _stopped(self) -> bool:
        return self.state == "released" or (self.scope is not None and self.scope.stopped.is_set())

    def wait(self) -> None:
        """Sleep until the slot; raises backend.Cancelled, or Abandoned once released or
        its scan ended."""
        left = self.slot - self.limiter._clock()
        if left > 0:
            self.limiter._sleep(left, self._stopped)

    def start(self) -> float:
        """Record this request as sent now, waiting first while the window of send times
        is full; the send time.  Raises what :meth:`wait` raises."""
        while True:
            with self._lock:
                if self.state == "released":
                    raise Abandoned("cognito_fdw: a released request-rate slot was used")
                wait, now = self.limiter._start(self)
                if wait <= 0:
                    self.state = "started"
                    return now
            self.limiter._sleep(wait, self._stopped)

    def release(self) -> None:
        """Give the slot back unless the request was sent; no later start() is possible."""
        with self._lock:
            unused = self.state == "reserved"
            self.state = "released"
        if unused:
            with contextlib.suppress(Abandoned):  # its scan ended: Scope.close released it
                self.limiter._release(self)

    def renewed(self) -> Ticket:
        """A new reservation for the same caller (a retry is a request of its own)."""
        return self.limiter.reserve(self.scope)


class RateLimiter:
    """Lets at most ``rate`` requests be sent within any window; one process, thread-safe."""

    def __init__(
        self,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float, Callable[[], bool]], None] = cancellable_sleep,
    ):
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._window = Window()
        self._lock = threading.Lock()

    def _apply(self, change: Callable[[Window, float], T]) -> T:
        """Apply ``change(window, now)`` atomically; its result."""
        with self._lock:
            now = self._clock()
            result = change(self._window, now)
            self._window.prune(now)
            return result

    @contextlib.contextmanager
    def _within(self, scope: Scope | None) -> Iterator[set[int]]:
        """The scope's count of open reservations, entered (a throwaway set without one)."""
        if scope is None:
            yield set()
        else:
            with scope._entered(self) as reserved:
                yield reserved

    def reserve(self, scope: Scope | None = None) -> Ticket:
        """A reservation for one request (see the module docstring), in ``scope`` or the
        calling thread's (:func:`scoped`)."""
        scope = scope or getattr(_scope, "current", None)
        token = int.from_bytes(os.urandom(8), "little")
        with self._within(scope) as reserved:
            slot, now = self._apply(lambda w, now: (w.reserve(now, self.rate, token), now))
            reserved.add(token)
        return Ticket(self, slot, token, now, scope)

    def _start(self, ticket: Ticket) -> tuple[float, float]:
        """(0.0, send time) once recorded, else (seconds to wait, now)."""
        with self._within(ticket.scope) as reserved:
            wait, now = self._apply(lambda w, now: (w.start(now, self.rate, ticket.token), now))
            if wait <= 0:
                reserved.discard(ticket.token)
            return wait, now

    def _release(self, ticket: Ticket) -> None:
        with self._within(ticket.scope) as reserved:
            self._apply(lambda w, now: w.release(ticket.token))
            reserved.discard(ticket.token)

    def window(self) -> Window:
        """A copy of the window as it stands (old entries pruned): for tests and checks."""
        return self._apply(lambda w, now: Window(list(w.sent), list(w.waiting)))

    def acquire(self) -> None:
        """Block until this caller may send one request, and count it as sent now."""
        ticket = self.reserve()
        try:
            ticket.wait()
            ticket.start()
        finally:
            ticket.release()
