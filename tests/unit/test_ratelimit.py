"""The request-rate window: reservations, sends, scopes; shared by processes in one file,
locked, read and rewritten."""

from __future__ import annotations

import multiprocessing
import os
import signal
import struct
import threading
import time

import pytest

from cognito_fdw.aws import quota, ratelimit
from cognito_fdw.aws.quota import SharedRateLimiter, limiter_for, shared_directory, window_file
from cognito_fdw.aws.ratelimit import MAX_RATE, SPACING_SECONDS, RateLimiter, Scope, scoped
from cognito_fdw.errors import CognitoFdwError
from cognito_fdw.pg import backend

from ..support.clock import FakeClock


def narrowest_gap(starts, rate):
    """The shortest time between two starts ``rate`` apart: under a window means some
    window holds more than ``rate`` starts."""
    starts = sorted(starts)
    gaps = [b - a for a, b in zip(starts, starts[rate:])]
    return min(gaps) if gaps else None


def take(limiter):
    """A reservation sent at once (on time, or late: whenever the clock says)."""
    ticket = limiter.reserve()
    ticket.start()
    return ticket


def _send(path, rate, count, out):
    # One backend: reserve, wait for the slot, record the send; like Pool.call and
    # botocore's before-send.  A random extra delay before the send, as a busy CPU adds.
    import random

    limiter = SharedRateLimiter(path, rate, sleep=lambda s, stopped: time.sleep(s))
    for _ in range(count):
        ticket = limiter.reserve()
        ticket.wait()
        time.sleep(random.choice([0.0, 0.0, 0.0, 0.15]))
        out.put((os.getpid(), ticket.start(), ticket.delay))


def test_processes_sharing_a_window_never_send_more_than_the_rate_in_any_window(tmp_path):
    rate, processes, each = 10, 6, 8  # 48 requests: the first 10 at once, then 10 a window
    path = str(tmp_path / "account.window")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    workers = [ctx.Process(target=_send, args=(path, rate, each, out)) for _ in range(processes)]
    for w in workers:
        w.start()
    got = [out.get(timeout=30) for _ in range(processes * each)]
    for w in workers:
        w.join(timeout=10)
        assert w.exitcode == 0
    sent = [at for _, at, _ in got]
    # Sends `rate` apart are a whole window apart, however late some were sent...
    assert narrowest_gap(sent, rate) >= SPACING_SECONDS - 1e-9
    # ...and little is wasted: the first 10 at once, then evenly, 10 a window (1.05 s); the
    # slack is for a loaded machine's late processes, not a speed requirement.
    assert max(sent) - min(sent) < (processes * each - 1) / rate * SPACING_SECONDS + 3.0
    # Served in order of arrival: every process got slots, none waited much longer than
    # the requests ahead of it (one each of the other five) could take.
    assert {pid for pid, _, _ in got} == {w.pid for w in workers}
    assert max(delay for _, _, delay in got) < 3.0 + processes / rate


def test_threads_and_limiters_of_one_process_share_the_file_window(tmp_path):
    clock = FakeClock()
    path = str(tmp_path / "w")
    first, second = SharedRateLimiter(path, 5, clock), SharedRateLimiter(path, 5, clock)
    delays = [(first if i % 2 else second).reserve().delay for i in range(12)]
    # A burst of 5, then the full window is filled evenly: one a fifth of a spacing.
    assert delays == pytest.approx([0.0] * 5 + [SPACING_SECONDS * (1 + i / 5) for i in range(7)])


def test_each_reservation_honours_its_own_rate_against_the_shared_window(tmp_path):
    clock = FakeClock()
    path = str(tmp_path / "w")
    slow, fast = SharedRateLimiter(path, 4, clock), SharedRateLimiter(path, 8, clock)
    taken = []  # (slot, rate of the server that took it)
    for i in range(40):
        limiter = slow if i % 3 else fast
        taken.append((limiter.reserve().slot, limiter.rate))
        clock.now += 0.01
    slots = [slot for slot, _ in taken]
    assert slots == sorted(slots)  # first come, first served
    for i, (slot, rate) in enumerate(taken):
        # Each request starts when fewer than its own server's cap started in the second
        # before it (the float sum of a slot and a second is not exact: 1e-9 of slack).
        assert sum(slot - 1.0 + 1e-9 < s for s in slots[:i]) < rate
    assert narrowest_gap(slots, 8) >= 1.0 - 1e-9  # so never more than the larger cap


def test_a_late_send_holds_the_next_one_a_whole_window_after_it():
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock, sleep=clock.sleep)
    first, second = limiter.reserve(), limiter.reserve()
    assert (first.delay, second.delay) == pytest.approx((0.0, SPACING_SECONDS))
    clock.now += 0.3  # the first is sent late (a busy CPU) ...
    assert first.start() == pytest.approx(1000.3)
    clock.now = second.slot  # ... the second wakes on time for its slot,
    second.wait()
    # ... and is sent a window after the first's send, not after its slot.
    assert second.start() == pytest.approx(1000.3 + SPACING_SECONDS)


def test_a_released_reservation_holds_up_nobody():
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep)
    take(limiter), take(limiter)  # the window is full until 1000 + SPACING_SECONDS
    waiting = [limiter.reserve() for _ in range(3)]  # a cancelled scan's workers
    assert waiting[-1].delay == pytest.approx(SPACING_SECONDS * 2)
    for ticket in waiting:
        ticket.release()
    assert limiter.reserve().delay == pytest.approx(SPACING_SECONDS)
    with pytest.raises(ratelimit.Abandoned):
        waiting[0].start()  # a released slot cannot be used any more


def test_a_scan_that_ends_gives_its_workers_slots_back_at_once():
    limiter, scope, outcome = RateLimiter(1), Scope(), []
    limiter.acquire()  # the window is full for a spacing

    def worker():
        with scoped(scope):
            try:
                limiter.acquire()
            except ratelimit.Abandoned as exc:
                outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    while not limiter.window().waiting:
        time.sleep(0.001)
    scope.close()
    # Released by the backend's own thread, before it returns to PostgreSQL (where the
    # worker would be frozen): not whenever the worker runs again.
    assert limiter.window().waiting == []
    thread.join(0.5)
    assert not thread.is_alive() and len(outcome) == 1
    assert len(limiter.window().sent) == 1


def test_workers_take_no_turn_while_the_backend_is_in_postgresql_nor_after_the_scan():
    limiter, scope, tickets = RateLimiter(5), Scope(), []

    def worker():
        with scoped(scope):
            tickets.append(limiter.reserve())

    thread = threading.Thread(target=worker)
    with scope.outside():  # a row on its way through PostgreSQL
        thread.start()
        thread.join(0.2)
        assert thread.is_alive() and limiter.window().waiting == []
    thread.join(1.0)
    assert len(tickets) == 1 and len(limiter.window().waiting) == 1
    scope.close()
    assert limiter.window().waiting == []
    with scoped(scope), pytest.raises(ratelimit.Abandoned):
        limiter.reserve()
    with pytest.raises(ratelimit.Abandoned):
        tickets[0].start()  # nor is a reservation of the scan sent any more


def test_the_file_stays_small_however_many_requests_pass(tmp_path):
    clock = FakeClock()
    path = str(tmp_path / "w")
    limiter = SharedRateLimiter(path, MAX_RATE, clock)
    for _ in range(3 * MAX_RATE):
        # The most the rate allows, evenly spread: no wait.
        assert take(limiter).delay == pytest.approx(0.0, abs=1e-9)
        clock.now += SPACING_SECONDS / MAX_RATE * 1.0001
    assert os.path.getsize(path) <= quota._HEADER.size + 8 * MAX_RATE
    clock.now += 5.0  # an idle account: the old sends are dropped at the next request
    take(limiter)
    assert os.path.getsize(path) == quota._HEADER.size + 8
    limiter.reserve()  # a reservation not yet sent: its slot and token
    assert os.path.getsize(path) == quota._HEADER.size + 8 + quota._RESERVATION.size


@pytest.mark.parametrize(
    ("garble", "wait"),
    [
        pytest.param(lambda data: data, SPACING_SECONDS, id="intact"),
        pytest.param(lambda data: data[:8] + bytes(16) + data[24:], 0.0, id="another boot"),
        pytest.param(lambda data: data[:-4], 0.0, id="torn"),
        pytest.param(lambda data: data[:-8] + struct.pack("<d", 1e12), 0.0, id="far future"),
        pytest.param(lambda data: data[:-8] + struct.pack("<d", 1.0), 0.0, id="unsorted"),
        pytest.param(lambda data: b"garbage", 0.0, id="garbage"),
    ],
)
def test_a_window_of_another_boot_or_garbled_is_discarded(tmp_path, garble, wait):
    clock = FakeClock()
    path = str(tmp_path / "w")
    limiter = SharedRateLimiter(path, 3, clock, boot=b"b" * 16)
    for _ in range(3):
        take(limiter)
    with open(path, "r+b") as f:
        data = garble(f.read())
        f.seek(0)
        f.truncate()
        f.write(data)
    # An intact full window makes the next request wait a spacing; a discarded one does not.
    assert limiter.reserve().delay == pytest.approx(wait)


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
    assert SharedRateLimiter(path, 5).reserve().delay == 0.0
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
    monkeypatch.setattr(quota.backend, "data_directory", lambda: str(tmp_path))
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


class FlakyEndpoint:
    """An HTTP server answering ListUsers with a 500 ``failures`` times, then an empty page."""

    def __init__(self, failures):
        import http.server
        import json

        endpoint = self
        self.failures = failures
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.requests += 1
                failing = endpoint.requests <= endpoint.failures
                error = {"__type": "InternalErrorException", "message": "x"}
                body = json.dumps(error if failing else {"Users": []}).encode()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_every_attempt_sent_is_counted_in_the_window_retries_too():
    from cognito_fdw.aws.client import Pool, Stats
    from cognito_fdw.options import parse_options

    endpoint = FlakyEndpoint(failures=2)
    try:
        pool = Pool(parse_options({
            "user_pool_id": "us-east-1_Test123", "object": "users", "region": "us-east-1",
            "endpoint_url": endpoint.url, "aws_access_key_id": "AKIDTEST",
            "aws_secret_access_key": "secret", "max_attempts": "3",
        }))  # fmt: skip
        assert list(pool.list_user_pages(Stats())) == [[]]
    finally:
        endpoint.server.shutdown()
    assert endpoint.requests == 3
    # Two retries and the answered attempt: three sends in the window, no slot left waiting.
    assert len(pool.limiter.window().sent) == 3
    assert pool.limiter.window().waiting == []
