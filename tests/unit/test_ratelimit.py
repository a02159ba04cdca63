"""The request-rate window shared by processes: one file, locked, read and rewritten."""

from __future__ import annotations

import multiprocessing
import os
import signal
import struct
import time

import pytest

from cognito_fdw import backend, ratelimit
from cognito_fdw.errors import CognitoFdwError
from cognito_fdw.ratelimit import (
    MAX_RATE,
    SPACING_SECONDS,
    RateLimiter,
    SharedRateLimiter,
    limiter_for,
    shared_directory,
    window_file,
)


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


class RecordingClock:
    """The real monotonic clock, remembering the last reading (the reservation's ``now``)."""

    last = 0.0

    def __call__(self):
        self.last = time.monotonic()
        return self.last


def narrowest_gap(starts, rate):
    """The shortest time between two starts ``rate`` apart: under a second means some
    one-second window holds more than ``rate`` starts."""
    starts = sorted(starts)
    gaps = [b - a for a, b in zip(starts, starts[rate:])]
    return min(gaps) if gaps else None


def _take_slots(path, rate, count, out):
    # One backend: reserve, record the slot it was given, wait for it; like Pool.call.
    clock = RecordingClock()
    limiter = SharedRateLimiter(path, rate, clock=clock, sleep=time.sleep)
    for _ in range(count):
        wait = limiter.reserve()
        out.put((os.getpid(), clock.last + wait, wait))
        time.sleep(max(wait, 0.0))


def test_processes_sharing_a_window_never_start_more_than_the_rate_in_any_second(tmp_path):
    rate, processes, each = 10, 6, 8  # 48 requests: the first 10 at once, then 10 a second
    path = str(tmp_path / "account.window")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    workers = [
        ctx.Process(target=_take_slots, args=(path, rate, each, out)) for _ in range(processes)
    ]
    for w in workers:
        w.start()
    got = [out.get(timeout=30) for _ in range(processes * each)]
    for w in workers:
        w.join(timeout=10)
        assert w.exitcode == 0
    slots = [slot for _, slot, _ in got]
    # The slots `rate` apart are a second apart: no window holds rate + 1 starts...
    assert narrowest_gap(slots, rate) >= ratelimit.WINDOW_SECONDS - 1e-9
    # ...and none is wasted: the first 10 at once, then evenly, 10 a spacing (1.1 s).
    assert max(slots) - min(slots) < (processes * each - 1) / rate * SPACING_SECONDS + 0.5
    # Served in order of arrival: every process got slots, none waited much longer than
    # the requests ahead of it (one each of the other five) could take.
    assert {pid for pid, _, _ in got} == {w.pid for w in workers}
    assert max(wait for _, _, wait in got) < 1.0 + processes / rate


def test_threads_and_limiters_of_one_process_share_the_file_window(tmp_path):
    clock = FakeClock()
    path = str(tmp_path / "w")
    first, second = SharedRateLimiter(path, 5, clock), SharedRateLimiter(path, 5, clock)
    waits = [(first if i % 2 else second).reserve() for i in range(12)]
    # A burst of 5, then the full window is filled evenly: one a fifth of a spacing.
    assert waits == pytest.approx([0.0] * 5 + [SPACING_SECONDS * (1 + i / 5) for i in range(7)])


def test_each_reservation_honours_its_own_rate_against_the_shared_window(tmp_path):
    clock = FakeClock()
    path = str(tmp_path / "w")
    slow, fast = SharedRateLimiter(path, 4, clock), SharedRateLimiter(path, 8, clock)
    taken = []  # (slot, rate of the server that took it)
    for i in range(40):
        limiter = slow if i % 3 else fast
        taken.append((clock.now + limiter.reserve(), limiter.rate))
        clock.now += 0.01
    slots = [slot for slot, _ in taken]
    assert slots == sorted(slots)  # first come, first served
    for i, (slot, rate) in enumerate(taken):
        # Each request starts when fewer than its own server's cap started in the second
        # before it (the float sum of a slot and a second is not exact: 1e-9 of slack).
        assert sum(slot - 1.0 + 1e-9 < s for s in slots[:i]) < rate
    assert narrowest_gap(slots, 8) >= 1.0 - 1e-9  # so never more than the larger cap


def test_the_file_stays_small_however_many_requests_pass(tmp_path):
    clock = FakeClock()
    path = str(tmp_path / "w")
    limiter = SharedRateLimiter(path, MAX_RATE, clock)
    for _ in range(3 * MAX_RATE):
        # The most the rate allows, evenly spread: no wait (but for float rounding).
        assert limiter.reserve() == pytest.approx(0.0, abs=1e-9)
        clock.now += SPACING_SECONDS / MAX_RATE
    assert os.path.getsize(path) <= ratelimit._HEADER.size + 8 * MAX_RATE
    clock.now += 5.0  # an idle account: the old starts are dropped at the next request
    limiter.reserve()
    assert os.path.getsize(path) == ratelimit._HEADER.size + 8


@pytest.mark.parametrize(
    ("garble", "wait"),
    [
        pytest.param(lambda data: data, SPACING_SECONDS, id="intact"),
        pytest.param(lambda data: data[:8] + bytes(16) + data[24:], 0.0, id="another boot"),
        pytest.param(lambda data: data[:-4], 0.0, id="torn"),
        pytest.param(lambda data: data[:-8] + struct.pack("<d", 1e12), 0.0, id="far future"),
        pytest.param(lambda data: b"garbage", 0.0, id="garbage"),
    ],
)
def test_a_window_of_another_boot_or_garbled_is_discarded(tmp_path, garble, wait):
    clock = FakeClock()
    path = str(tmp_path / "w")
    limiter = SharedRateLimiter(path, 3, clock, boot=b"b" * 16)
    for _ in range(3):
        limiter.reserve()
    with open(path, "r+b") as f:
        data = garble(f.read())
        f.seek(0)
        f.truncate()
        f.write(data)
    # An intact full window makes the next request wait a spacing; a discarded one does not.
    assert limiter.reserve() == pytest.approx(wait)


def _hold_the_lock(path, ready):
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    time.sleep(60)


def test_a_process_killed_holding_the_lock_does_not_block_the_others(tmp_path):
    path = str(tmp_path / "w")
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_the_lock, args=(path, ready))
    holder.start()
    assert ready.wait(10)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    started = time.monotonic()
    assert SharedRateLimiter(path, 5).reserve() == 0.0
    assert time.monotonic() - started < 1.0


def test_the_directory_is_created_private_and_refused_when_not(tmp_path):
    made = shared_directory(str(tmp_path))
    assert made == str(tmp_path / "cognito_fdw_quota")
    assert os.stat(made).st_mode & 0o777 == 0o700
    assert shared_directory(str(tmp_path)) == made  # and found again
    os.chmod(made, 0o755)
    with pytest.raises(CognitoFdwError, match="mode 0755, not 0700") as err:
        shared_directory(str(tmp_path))
    assert str(tmp_path.parent) not in err.value.message  # no full data directory path
    assert "remove it" in err.value.hint


def test_a_symlinked_directory_or_window_file_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    data = tmp_path / "data"
    data.mkdir()
    (data / "cognito_fdw_quota").symlink_to(elsewhere)
    with pytest.raises(CognitoFdwError, match="not a directory"):
        shared_directory(str(data))
    (elsewhere / "target").write_bytes(b"")
    link = elsewhere / "x.window"
    link.symlink_to(elsewhere / "target")
    with pytest.raises(CognitoFdwError, match="elsewhere/x.window: Too many levels"):
        SharedRateLimiter(str(link), 5).reserve()


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_files_of_another_os_user_are_refused(tmp_path):
    made = shared_directory(str(tmp_path))
    window = os.path.join(made, "x.window")
    open(window, "wb").close()
    os.chown(window, 65534, 65534)
    with pytest.raises(CognitoFdwError, match="not a regular file of the server's OS user"):
        SharedRateLimiter(window, 5).reserve()
    os.chown(made, 65534, 65534)
    with pytest.raises(CognitoFdwError, match="owned by another OS user"):
        shared_directory(str(tmp_path))


def test_the_window_file_is_named_by_a_hash_of_the_account(tmp_path):
    key = ("us-east-1", None, "AKIAEXAMPLEKEY12345")
    name = window_file(str(tmp_path), key)
    assert "AKIA" not in name and name.endswith(".window")
    assert name == window_file(str(tmp_path), key)
    assert name != window_file(str(tmp_path), ("us-east-1", None, "AKIAOTHERKEY1234567"))


def test_outside_a_backend_the_limiter_is_the_process_own(monkeypatch, tmp_path):
    assert type(limiter_for(("r", "e", "outside"), 25)) is RateLimiter
    monkeypatch.setattr(ratelimit.backend, "data_directory", lambda: str(tmp_path))
    shared = limiter_for(("r", "e", "inside"), 25)
    assert isinstance(shared, SharedRateLimiter)
    assert os.path.dirname(shared.path) == str(tmp_path / "cognito_fdw_quota")


def test_a_cancel_ends_the_wait_for_a_slot(monkeypatch):
    monkeypatch.setattr(backend, "cancel_pending", lambda: True)
    limiter = RateLimiter(1)
    limiter.acquire()  # the first is free
    started = time.monotonic()
    with pytest.raises(backend.Cancelled, match="request-rate slot"):
        limiter.acquire()
    assert time.monotonic() - started < 0.2
