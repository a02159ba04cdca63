"""A client-side request-rate limit, shared by every backend of the PostgreSQL server.

Cognito's quotas are per account and region, shared with every application using the
pool, and exceeding them answers ``TooManyRequestsException``.  So the wrapper paces its
own requests: one is *sent* only while fewer than ``rate`` were sent in the window before
it (a second, plus a margin for the way to Cognito, so that they also arrive at most
``rate`` in any second).  Each request goes through two steps, both on one shared window:

1. :meth:`RateLimiter.reserve` gives it a slot in line, first come, first served: at once
   while the window has room (a short burst, an IN list or the first rows of a join, is
   not slowed down at all), otherwise paced evenly, 1/rate of a window after the slot
   before it.  The caller sleeps until its slot (:meth:`Ticket.wait`).
2. :meth:`Ticket.start`, called at the moment the request is sent (botocore's
   ``before-send``, after signing), records the send time itself, and only while the
   window of *send times* has room; otherwise it waits for it.  A thread that sends late
   (after the GIL, on a busy CPU: measured up to 180 ms between a slot and its request's
   send, on two overloaded CPUs) therefore never lands within a window of the request
   ``rate`` places before it: the margin only has to cover the way from the send to
   Cognito, not the wrapper's own delays.

A reservation that is never used (a cancel, a scan that ended: LIMIT, an error elsewhere)
is released, so it holds up nobody: waits end on a cancel (:func:`backend.cancel_pending`),
or in a scan worker when its scan stops (:func:`stop_waiting_on`).

In a backend the window is one small file per endpoint and account (region, endpoint,
access key id) in ``cognito_fdw_quota/`` of the server's data directory, so every backend
(separate processes) and every scan worker of each takes its turn from the same window.
An update locks the file (``flock``, released by the kernel if the process dies), reads
the window, changes it and writes it back.  Times are ``time.monotonic()``: on Linux,
CLOCK_MONOTONIC, one clock for every process of the machine; it restarts at boot, so the
file carries the boot id and a window of another boot is discarded.  Outside a backend (the
CLI, unit tests) the window is the process's own.

Each reservation honours its own ``rate``: with servers of different caps on one account,
each request is sent when fewer than its own server's cap were sent in the window before
it, so the largest cap bounds the account's total.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import math
import os
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from . import backend
from .errors import CognitoFdwError

WINDOW_SECONDS = 1.0
# Between a request's send (recorded by Ticket.start, after signing) and its arrival at
# Cognito lie the network and the far side's own scheduling, different for every request.
# Sends a second apart would let a slow request and a prompt one a second after it land in
# one second at Cognito; a window this much longer keeps the arrivals within the rate too,
# while no request takes this much longer on the way than the one `rate` places after it.
# Measured from send to arrival at the benchmark's proxy on two overloaded CPUs (eight
# sessions, load average above 4): 99 % within 35 ms, the slowest 64 ms (the proxy itself
# waiting for a CPU).  A full window then leaves 1/1.05 = 95 % of the rate.
ARRIVAL_MARGIN_SECONDS = 0.05
SPACING_SECONDS = WINDOW_SECONDS + ARRIVAL_MARGIN_SECONDS
MAX_RATE = 1000  # the option's upper bound; only the last MAX_RATE sends can matter
MAX_WAITING = 4096  # reservations kept in the file: far more than sessions x scan workers
DIRECTORY = "cognito_fdw_quota"
_POLL_SECONDS = 0.05

# The file: magic, boot id, counts, then the send times (float64, ascending) and the
# reservations not yet sent (float64 slot and uint64 token each, ascending by slot).
_MAGIC = b"cfdwq\x002\x00"
_HEADER = struct.Struct("<8s16sII")
_RESERVATION = struct.Struct("<dQ")
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
    """The shared state: send times (ascending) and the reservations not yet sent
    (``(slot, token)``, ascending by slot).  Pure: the caller supplies the clock."""

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

    def release(self, token: int) -> None:
        self.waiting = [entry for entry in self.waiting if entry[1] != token]

    def prune(self, now: float) -> None:
        """Drop what can shape no later slot or send: anything a window old (a reservation
        that old belongs to a request that is late or to a process that died)."""
        horizon = now - SPACING_SECONDS
        self.sent = [s for s in self.sent[-MAX_RATE:] if s > horizon]
        self.waiting = [entry for entry in self.waiting if entry[0] > horizon][-MAX_WAITING:]


def cancellable_sleep(seconds: float, stopped: Callable[[], bool] = lambda: False) -> None:
    """Sleep, but raise :class:`backend.Cancelled` as soon as the statement is cancelled,
    and :class:`Abandoned` as soon as ``stopped()`` is true.

    Shared slots may be seconds away when many backends scan at once; a cancel,
    ``statement_timeout`` or the end of the scan must not wait for them.  Reading the
    cancel flags is a memory read, safe from a scan worker too (docs/multicorn.md H8).
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


_waiting = threading.local()


@contextlib.contextmanager
def stop_waiting_on(event: threading.Event | None) -> Iterator[None]:
    """Within the block, this thread's requests stop waiting for the rate limit (raising
    :class:`Abandoned`, their reservations released) once ``event`` is set: a scan worker
    whose scan ended must not hold a slot, nor send a request nobody will read.  None:
    only a cancel ends the waits."""
    previous = getattr(_waiting, "stop", None)
    _waiting.stop = event
    try:
        yield
    finally:
        _waiting.stop = previous


class Ticket:
    """One request's reservation: :meth:`wait` for its slot, :meth:`start` when it is sent,
    :meth:`release` when it will not be (a no-op after start).  Thread-safe: a request is
    reserved in one thread and may be sent from another."""

    def __init__(self, limiter: RateLimiter, slot: float, token: int, reserved_at: float):
        self.limiter = limiter
        self.slot = slot
        self.token = token
        self.delay = slot - reserved_at  # how long the reservation had to wait, seconds
        self.stop: threading.Event | None = getattr(_waiting, "stop", None)
        self.state = "reserved"  # then "started" or "released"
        self._lock = threading.Lock()

    def _stopped(self) -> bool:
        return self.state == "released" or (self.stop is not None and self.stop.is_set())

    def wait(self) -> None:
        """Sleep until the slot; raises backend.Cancelled or Abandoned (see stop_waiting_on)."""
        left = self.slot - self.limiter._clock()
        if left > 0:
            self.limiter._sleep(left, self._stopped)

    def start(self) -> float:
        """Record this request as sent now, waiting first while the window of send times
        is full; the send time.  Raises Abandoned once released, and what :meth:`wait`
        raises."""
        while True:
            with self._lock:
                if self.state == "released":
                    raise Abandoned("cognito_fdw: a released request-rate slot was used")
                wait, now = self.limiter._update(
                    lambda w, now: (w.start(now, self.limiter.rate, self.token), now)
                )
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
            self.limiter._update(lambda w, now: w.release(self.token))

    def renewed(self) -> Ticket:
        """A new reservation for the same caller (a retry is a request of its own)."""
        ticket = self.limiter.reserve()
        ticket.stop = self.stop
        return ticket


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

    def _update(self, change: Callable[[Window, float], T]) -> T:
        """Apply ``change(window, now)`` atomically; its result."""
        with self._lock:
            now = self._clock()
            result = change(self._window, now)
            self._window.prune(now)
            return result

    def reserve(self) -> Ticket:
        """A reservation for one request (see the module docstring)."""
        token = int.from_bytes(os.urandom(8), "little")
        slot, now = self._update(lambda w, now: (w.reserve(now, self.rate, token), now))
        return Ticket(self, slot, token, now)

    def acquire(self) -> None:
        """Block until this caller may send one request, and count it as sent now."""
        ticket = self.reserve()
        try:
            ticket.wait()
            ticket.start()
        finally:
            ticket.release()


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose window is the file ``path``, shared by processes.

    ``path`` is opened for each update (never inherited across a fork, where two
    processes would share one lock) without following symlinks, and must be a regular
    file of this OS user.  Raises :class:`CognitoFdwError` when it cannot be used.
    """

    def __init__(
        self,
        path: str,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float, Callable[[], bool]], None] = cancellable_sleep,
        boot: bytes | None = None,
    ):
        super().__init__(rate, clock, sleep)
        self.path = path
        self._boot = boot_id() if boot is None else boot

    def _update(self, change: Callable[[Window, float], T]) -> T:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _unusable(self.path, exc) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise _unusable(self.path, "not a regular file of the server's OS user")
            fcntl.flock(fd, fcntl.LOCK_EX)
            now = self._clock()
            window = self._read(fd, now)
            result = change(window, now)
            window.prune(now)
            self._write(fd, window)
            return result
        except OSError as exc:
            raise _unusable(self.path, exc) from None
        finally:
            os.close(fd)  # releases the lock

    def _read(self, fd: int, now: float) -> Window:
        """The window; an empty one if the file is new, of another boot, or garbled."""
        size = _HEADER.size + 8 * MAX_RATE + _RESERVATION.size * MAX_WAITING
        data = os.pread(fd, size + 1, 0)
        if len(data) < _HEADER.size:
            return Window()
        magic, boot, sent, waiting = _HEADER.unpack_from(data)
        if (
            magic != _MAGIC
            or boot != self._boot
            or sent > MAX_RATE
            or waiting > MAX_WAITING
            or len(data) != _HEADER.size + 8 * sent + _RESERVATION.size * waiting
        ):
            return Window()
        window = Window(
            list(struct.unpack_from(f"<{sent}d", data, _HEADER.size)),
            list(_RESERVATION.iter_unpack(data[_HEADER.size + 8 * sent :])),
        )
        times = window.sent + [slot for slot, _ in window.waiting]
        # A slot is at most a spacing after the one before it, or ``now`` when it was taken
        # (rate >= 1), so the last is within that many spacings from now: anything later
        # was not written on this boot.
        if (
            not all(math.isfinite(t) for t in times)
            or window.sent != sorted(window.sent)
            or [slot for slot, _ in window.waiting] != sorted(slot for slot, _ in window.waiting)
            or (times and max(times) > now + len(times) * SPACING_SECONDS)
        ):
            return Window()
        return window

    def _write(self, fd: int, window: Window) -> None:
        data = b"".join(
            [
                _HEADER.pack(_MAGIC, self._boot, len(window.sent), len(window.waiting)),
                struct.pack(f"<{len(window.sent)}d", *window.sent),
                *(_RESERVATION.pack(*entry) for entry in window.waiting),
            ]
        )
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))


def _unusable(path: str, why: OSError | str) -> CognitoFdwError:
    # Named by its last two parts (cognito_fdw_quota/<file>): the data directory's full
    # path is for superusers to see.
    where = os.path.join(*path.split(os.sep)[-2:])
    if isinstance(why, OSError):
        why = why.strerror or type(why).__name__
    return CognitoFdwError(
        f"cognito_fdw cannot use its shared request-rate window {where}: {why}",
        hint=f"The directory {DIRECTORY} in the data directory must be the server's OS "
        "user's own, mode 0700, holding only the wrapper's files; remove it to have it "
        "created again.",
    )


def boot_id() -> bytes:
    """This boot's id (16 bytes): the monotonic clock's times are valid within it."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return bytes.fromhex(f.read().strip().replace("-", ""))
    except (OSError, ValueError):
        return bytes(16)


def shared_directory(data_directory: str) -> str:
    """``cognito_fdw_quota`` in ``data_directory``, created 0700 if missing.

    Refused with :class:`CognitoFdwError` unless it is a real directory (not a symlink)
    of this OS user that nobody else may write to or read.
    """
    path = os.path.join(data_directory, DIRECTORY)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        info = os.lstat(path)
    except OSError as exc:
        raise _unusable(path, exc) from None
    if not stat.S_ISDIR(info.st_mode):
        raise _unusable(path, "not a directory")
    if info.st_uid != os.getuid():
        raise _unusable(path, "owned by another OS user")
    if info.st_mode & 0o077:
        raise _unusable(path, f"mode {stat.S_IMODE(info.st_mode):04o}, not 0700")
    return path


def window_file(directory: str, key: tuple) -> str:
    """The window file of one endpoint and account: named by a hash, the key id not in clear."""
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    return os.path.join(directory, f"{digest}.window")


_limiters: dict[tuple, RateLimiter] = {}
_lock = threading.Lock()


def limiter_for(key: tuple, rate: int) -> RateLimiter:
    """The limiter for one endpoint and account (``key``) at ``rate``.

    In a backend it shares the window of every backend of the server; raises
    :class:`CognitoFdwError` when the shared directory is unsafe or unusable.
    """
    with _lock:
        limiter = _limiters.get((key, rate))
        if limiter is None:
            data_directory = backend.data_directory()
            if data_directory is None:
                limiter = RateLimiter(rate)
            else:
                path = window_file(shared_directory(data_directory), key)
                limiter = SharedRateLimiter(path, rate)
            _limiters[(key, rate)] = limiter
        return limiter
