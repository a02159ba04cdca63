"""One request-rate budget per account, shared by every backend of the PostgreSQL server.

The quota Cognito enforces is per account and region, so the window of
:mod:`cognito_fdw.aws.ratelimit` is one small file per endpoint and account (region, endpoint,
access key id) in ``cognito_fdw_quota/`` of the server's data directory: every backend
(separate processes) and every scan worker of each takes its turn from the same window.
An update locks the file (``flock``, released by the kernel if the process dies), reads
the window, changes it and writes it back.  Times are ``time.monotonic()``: on Linux,
CLOCK_MONOTONIC, one clock for every process of the machine; it restarts at boot, so the
file carries the boot id and a window of another boot is discarded.

Each reservation honours its own ``rate``: with servers of different caps on one account,
each request is sent when fewer than its own server's cap were sent in the window before
it, so the largest cap bounds the account's total.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import stat
import struct
import threading
import time
from collections.abc import Callable

from ..errors import CognitoFdwError
from ..pg import backend
from .ratelimit import (
    MAX_RATE,
    MAX_WAITING,
    SPACING_SECONDS,
    RateLimiter,
    T,
    Window,
    cancellable_sleep,
)

DIRECTORY = "cognito_fdw_quota"

# The file: magic, boot id, counts, then the send times (float64, ascending) and the
# reservations not yet sent (float64 slot and uint64 token each, ascending by slot).
_MAGIC = b"cfdwq\x002\x00"
_HEADER = struct.Struct("<8s16sII")
_RESERVATION = struct.Struct("<dQ")
_MAX_SIZE = _HEADER.size + 8 * MAX_RATE + _RESERVATION.size * MAX_WAITING


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

    def _apply(self, change: Callable[[Window, float], T]) -> T:
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
            window = _parse(os.pread(fd, _MAX_SIZE + 1, 0), self._boot, now)
            result = change(window, now)
            window.prune(now)
            data = _HEADER.pack(_MAGIC, self._boot, len(window.sent), len(window.waiting))
            data += struct.pack(f"<{len(window.sent)}d", *window.sent)
            data += b"".join(_RESERVATION.pack(*entry) for entry in window.waiting)
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            return result
        except OSError as exc:
            raise _unusable(self.path, exc) from None
        finally:
            os.close(fd)  # releases the lock


def _parse(data: bytes, boot: bytes, now: float) -> Window:
    """A window file's window; an empty one if the file is new, of another boot, or garbled."""
    if len(data) < _HEADER.size:
        return Window()
    magic, written_at_boot, sent, waiting = _HEADER.unpack_from(data)
    if (
        magic != _MAGIC
        or written_at_boot != boot
        or sent > MAX_RATE
        or waiting > MAX_WAITING
        or len(data) != _HEADER.size + 8 * sent + _RESERVATION.size * waiting
    ):
        return Window()
    window = Window(
        list(struct.unpack_from(f"<{sent}d", data, _HEADER.size)),
        list(_RESERVATION.iter_unpack(data[_HEADER.size + 8 * sent :])),
    )
    slots = [slot for slot, _ in window.waiting]
    times = window.sent + slots
    # A slot is at most a spacing after the one before it, or ``now`` when it was taken
    # (rate >= 1), so the last is within that many spacings from now: anything later was
    # not written on this boot.
    if (
        not all(math.isfinite(t) for t in times)
        or window.sent != sorted(window.sent)
        or slots != sorted(slots)
        or (times and max(times) > now + len(times) * SPACING_SECONDS)
    ):
        return Window()
    return window


def read_window(path: str) -> Window:
    """The window file ``path`` as it stands, read under a shared lock and left unchanged
    (for a reader that is not the file's owner: a test, a check)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return _parse(os.pread(fd, _MAX_SIZE + 1, 0), boot_id(), time.monotonic())
    finally:
        os.close(fd)


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


def budget_key(options) -> tuple:
    """What one request-rate budget is per: the region, the endpoint and the account whose
    quota the requests count against, named by the credential that signs them (the access
    key id; for a role assumed, the role's account, which owns the pool).  Roles signing
    with another account's keys take their turns in another window: they never wait
    behind a budget they do not share."""
    account = options.aws_access_key_id
    if options.role_arn:
        account = "account:" + options.role_arn.split(":")[4]
    return (options.region, options.endpoint_url, account)


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
