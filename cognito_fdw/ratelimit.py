"""A client-side request-rate limit, shared by every backend of the PostgreSQL server.

Cognito's quotas are per account and region, shared with every application using the
pool, and exceeding them answers ``TooManyRequestsException``.  So the wrapper paces its
own requests with a sliding window: a request may start only when fewer than ``rate``
requests started in the second before it (plus a margin for the way to Cognito, so that
they also arrive at most ``rate`` in any second).  A short burst (an IN list, the first
rows of a join) is not slowed down at all.

In a backend the window is one small file per endpoint and account (region, endpoint,
access key id) in ``cognito_fdw_quota/`` of the server's data directory, so every backend
(separate processes) and every scan worker of each takes its slots from the same window.
A reservation locks the file (``flock``, released by the kernel if the process dies),
reads the recent start times, appends its own slot and writes them back.  Start times are
``time.monotonic()``: on Linux, CLOCK_MONOTONIC, one clock for every process of the
machine; it restarts at boot, so the file carries the boot id and a window of another boot
is discarded.  Outside a backend (the CLI, unit tests) the window is the process's own.

Slots are handed out in order, first come first served, so no caller starves.  Each
reservation honours its own ``rate``: with servers of different caps on one account, each
request starts when fewer than its own server's cap started in the second before it, so
the largest cap bounds the account's total.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import math
import os
import stat
import struct
import threading
import time
from collections.abc import Callable, Sequence

from . import backend
from .errors import CognitoFdwError

WINDOW_SECONDS = 1.0
# Between a slot and its request's arrival at Cognito lie a thread's wake-up (after the
# GIL: a sibling worker may be parsing a page), signing and the network: a few ms, up to
# ~100 ms on an overloaded machine, different for every request.  Slots a second apart
# would let a late request and a prompt one a second after it land in one second at
# Cognito; spacing them this much more keeps the arrivals within the rate too, while one
# is not delayed by this much more than the one `rate` places after it.  Once a burst is
# spent, this leaves 91 % of the rate.  (Measured: 50 ms let 26 of 25 arrive in a second
# with eight sessions on two loaded CPUs.)
ARRIVAL_MARGIN_SECONDS = 0.1
SPACING_SECONDS = WINDOW_SECONDS + ARRIVAL_MARGIN_SECONDS
MAX_RATE = 1000  # the option's upper bound; only the last MAX_RATE starts can matter
DIRECTORY = "cognito_fdw_quota"
_POLL_SECONDS = 0.05

# The file: magic, boot id, count, then ``count`` start times (float64, ascending).
_MAGIC = b"cfdwq\x001\x00"
_HEADER = struct.Struct("<8s16sI")


def next_slot(starts: Sequence[float], now: float, rate: int) -> float:
    """When a request reserved at ``now`` may start, given the window's ascending ``starts``.

    Never before the last slot handed out (first come, first served), and never while
    ``rate`` requests started within the second (and margin) before it: the window opens
    when the request ``rate`` places back is SPACING_SECONDS old.  A request that has to
    wait anyway also keeps 1/rate of a spacing after the one before it: a window that
    stays full is filled evenly, not a whole burst at each spacing, whose late arrivals
    would meet the prompt head of the next burst within one second at Cognito.
    """
    slot = max(now, starts[-1]) if starts else now
    if len(starts) >= rate:
        slot = max(slot, starts[-rate] + SPACING_SECONDS)
    if slot > now:
        slot = max(slot, starts[-1] + SPACING_SECONDS / rate)
    return slot


def cancellable_sleep(seconds: float) -> None:
    """Sleep, but raise :class:`backend.Cancelled` as soon as the statement is cancelled.

    Shared slots may be seconds away when many backends scan at once; a cancel or
    ``statement_timeout`` must not wait for them.  Reading the cancel flags is a memory
    read, safe from a scan worker too (docs/multicorn.md H8).
    """
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if backend.cancel_pending():
            raise backend.Cancelled(
                "canceling statement: cognito_fdw stopped waiting for its request-rate slot",
                hint="The statement was cancelled (pg_cancel_backend, statement_timeout or "
                "shutdown) while it waited under max_requests_per_second.",
            )
        time.sleep(min(left, _POLL_SECONDS))


class RateLimiter:
    """Lets at most ``rate`` requests start within any one second; thread-safe, one process."""

    def __init__(
        self,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = cancellable_sleep,
    ):
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._starts: collections.deque[float] = collections.deque(maxlen=rate)
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a start time for one request; return how long the caller must wait for it."""
        with self._lock:
            now = self._clock()
            slot = next_slot(self._starts, now, self.rate)
            self._starts.append(slot)
            return slot - now

    def acquire(self) -> None:
        """Block until this caller may send one request."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose window is the file ``path``, shared by processes.

    ``path`` is opened for each reservation (never inherited across a fork, where two
    processes would share one lock) without following symlinks, and must be a regular
    file of this OS user.  Raises :class:`CognitoFdwError` when it cannot be used.
    """

    def __init__(
        self,
        path: str,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = cancellable_sleep,
        boot: bytes | None = None,
    ):
        super().__init__(rate, clock, sleep)
        self.path = path
        self._boot = boot_id() if boot is None else boot

    def reserve(self) -> float:
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
            starts = self._read(fd, now)
            slot = next_slot(starts, now, self.rate)
            starts.append(slot)
            # Older starts can shape no later slot; only the last MAX_RATE can.
            self._write(fd, [s for s in starts[-MAX_RATE:] if s > now - SPACING_SECONDS])
            return slot - now
        except OSError as exc:
            raise _unusable(self.path, exc) from None
        finally:
            os.close(fd)  # releases the lock

    def _read(self, fd: int, now: float) -> list[float]:
        """The window's start times; none if the file is new, of another boot, or garbled."""
        data = os.pread(fd, _HEADER.size + 8 * MAX_RATE + 8, 0)
        if len(data) < _HEADER.size:
            return []
        magic, boot, count = _HEADER.unpack_from(data)
        if magic != _MAGIC or boot != self._boot or len(data) < _HEADER.size + 8 * count:
            return []
        starts = list(struct.unpack_from(f"<{count}d", data, _HEADER.size))
        # A slot is at most SPACING_SECONDS after the one before it, or ``now`` when it was
        # taken (rate >= 1), so while fewer than MAX_RATE requests wait the last is within
        # len(starts) spacings from now: anything later was not written on this boot.
        if not all(math.isfinite(s) for s in starts) or starts != sorted(starts):
            return []
        if starts and starts[-1] > now + len(starts) * SPACING_SECONDS:
            return []
        return starts

    def _write(self, fd: int, starts: list[float]) -> None:
        data = _HEADER.pack(_MAGIC, self._boot, len(starts)) + struct.pack(
            f"<{len(starts)}d", *starts
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
    """This boot's id (16 bytes): the monotonic clock's start times are valid within it."""
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
