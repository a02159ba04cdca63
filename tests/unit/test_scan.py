"""Running plans: lookups and their cache, the concurrent scan, the rate limiter."""

from __future__ import annotations

import re
import threading
import time

import pytest

from cognito_fdw.aws import scan
from cognito_fdw.aws.client import Stats
from cognito_fdw.aws.quota import limiter_for
from cognito_fdw.aws.ratelimit import SPACING_SECONDS, RateLimiter
from cognito_fdw.errors import CognitoApiError
from cognito_fdw.pg import backend
from cognito_fdw.plans import ADMIN_GET_USER, LIST_USERS, LOOKUPS, PARTS, SCAN, Plan, Request
from cognito_fdw.pushdown import PARTITIONS

from ..support.clock import FakeClock
from ..support.nocache import NoCache


def user(name, sub):
    return {"Username": name, "Attributes": [{"Name": "sub", "Value": sub}]}


class FakePool(NoCache):
    """Pages like ListUsers (60 a page) over a list of users; records every request."""

    def __init__(self, users, fail_on=None, page_delay=0.0):
        self.users = users
        self.calls = []
        self.pinned_on = []  # the thread of each pinned() call
        self.fail_on = fail_on
        self.page_delay = page_delay
        self.lock = threading.Lock()

    def _matches(self, filter):
        if filter is None:
            return list(self.users)
        attribute, op, quoted = filter.split(" ", 2)
        value = quoted[1:-1]
        key = (lambda u: u["Username"]) if attribute == "username" else (
            lambda u: u["Attributes"][0]["Value"]
        )  # fmt: skip
        if op == "=":
            return [u for u in self.users if key(u) == value]
        return [u for u in self.users if key(u).startswith(value)]

    def pinned(self):
        # Like Pool.pinned: the pool the workers share (this one: it has no client to resolve).
        self.pinned_on.append(threading.current_thread())
        return self

    def list_user_pages(self, stats, filter=None, limit=None):
        # Like Pool.list_user_pages: pages of 60, no more users asked for than the limit.
        found = self._matches(filter)
        if limit is not None:
            found = found[:limit]
        for start in range(0, max(1, len(found)), 60):
            if limit == 0:
                return
            stats.requests += 1
            with self.lock:
                self.calls.append(filter)
            if self.fail_on is not None and self.fail_on == filter:
                raise CognitoApiError("boom", code="TooManyRequestsException")
            time.sleep(self.page_delay)
            page = found[start : start + 60]
            stats.rows += len(page)
            yield page

    def get_user(self, stats, username):
        stats.requests += 1
        self.calls.append(("get", username))
        found = next((u for u in self.users if u["Username"] == username), None)
        stats.rows += found is not None
        return found


USERS = [user(f"u{i:04d}", f"{i % 16:x}{i:07d}") for i in range(1000)]
PARTS_PLAN = Plan(
    PARTS,
    tuple(Request(LIST_USERS, filter=f'sub ^= "{p}"') for p in PARTITIONS),
    len(USERS),
    workers=4,
)


def test_the_concurrent_scan_returns_every_user_once_from_the_calling_thread():
    pool, stats = FakePool(USERS), Stats()
    got = list(scan.run(PARTS_PLAN, pool, stats, scan.LookupCache()))
    assert sorted(u["Username"] for u in got) == [u["Username"] for u in USERS]
    assert stats.requests == 16 * 2  # 62 or 63 users per part: two pages each
    assert stats.rows == len(USERS)
    assert pool.pinned_on == [threading.main_thread()]  # before the workers, by the caller


def test_closing_the_concurrent_scan_stops_its_workers():
    pool = FakePool(USERS * 4, page_delay=0.01)
    rows = scan.run(PARTS_PLAN, pool, Stats(), scan.LookupCache())
    next(rows)
    rows.close()
    for thread in threading.enumerate():
        if thread.name.startswith("cognito-fdw"):
            thread.join()
    # 16 parts of 5 pages: stopped workers finish at most their page in flight.
    assert len(pool.calls) < 16 * 5


def test_a_worker_error_is_raised_in_the_calling_thread():
    pool = FakePool(USERS, fail_on='sub ^= "7"')
    with pytest.raises(CognitoApiError, match="boom"):
        list(scan.run(PARTS_PLAN, pool, Stats(), scan.LookupCache()))


def test_a_cancel_stops_the_wait_for_workers(monkeypatch):
    release = threading.Event()

    class SlowPool(FakePool):
        def list_user_pages(self, stats, filter=None, limit=None):
            release.wait(10)  # without the cancel poll, the scan would end normally
            yield from super().list_user_pages(stats, filter, limit)

    monkeypatch.setattr(backend, "cancel_pending", lambda: True)
    try:
        with pytest.raises(backend.Cancelled):
            list(scan.run(PARTS_PLAN, SlowPool(USERS), Stats(), scan.LookupCache()))
    finally:
        release.set()


def test_lookups_deduplicate_users_and_the_cache_answers_repeats():
    pool, cache = FakePool(USERS), scan.LookupCache()
    plan = Plan(
        LOOKUPS,
        (Request(ADMIN_GET_USER, username="u0001"), Request(LIST_USERS, filter='sub ^= "1"')),
        2,
    )
    got = [u["Username"] for u in scan.run(plan, pool, Stats(), cache)]
    assert got.count("u0001") == 1
    stats = Stats()
    again = [u["Username"] for u in scan.run(plan, pool, stats, cache)]
    assert again == got
    assert stats.requests == 2  # sub ^= "1" (63 users) again: too big to cache; not u0001


def test_the_cache_is_emptied_for_another_statement():
    pool, cache = FakePool(USERS), scan.LookupCache()
    plan = Plan(LOOKUPS, (Request(ADMIN_GET_USER, username="u0002"),), 1)
    cache.claim(1)
    list(scan.run(plan, pool, Stats(), cache))
    cache.claim(1)
    list(scan.run(plan, pool, Stats(), cache))
    cache.claim(2)
    list(scan.run(plan, pool, Stats(), cache))
    assert pool.calls == [("get", "u0002")] * 2


def test_a_plain_scan_pages_once():
    pool, stats = FakePool(USERS[:150]), Stats()
    assert (
        len(
            list(scan.run(Plan(SCAN, (Request(LIST_USERS),), 150), pool, stats, scan.LookupCache()))
        )
        == 150
    )
    assert stats.requests == 3


def test_the_rate_limiter_allows_a_burst_then_at_most_rate_per_second():
    clock = FakeClock(now=100.0)
    limiter = RateLimiter(20, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(65):
        limiter.acquire()
        starts.append(clock.now)
        clock.now += 0.001  # each request takes a millisecond to send
    assert starts[19] - starts[0] == pytest.approx(0.019)  # the first 20 at once
    assert starts[20] == pytest.approx(starts[0] + SPACING_SECONDS)
    assert all(b - a >= SPACING_SECONDS - 1e-9 for a, b in zip(starts, starts[20:]))


def test_the_rate_limiter_is_shared_by_threads():
    limiter = RateLimiter(10, clock=lambda: 0.0)
    waits, lock = [], threading.Lock()

    def work():
        for _ in range(10):
            wait = limiter.reserve().delay
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The first 10 at once, then one every tenth of a spacing, in order of arrival.
    expected = [0.0] * 10 + [SPACING_SECONDS * (1 + i / 10) for i in range(30)]
    assert sorted(waits) == pytest.approx(expected)


def test_limiters_are_per_endpoint_and_rate():
    assert limiter_for(("r", "e", "k"), 25) is limiter_for(("r", "e", "k"), 25)
    assert limiter_for(("r", "e", "k"), 25) is not limiter_for(("r", "e", "k"), 10)


def lookup_plan(*names, workers=4):
    return Plan(
        LOOKUPS, tuple(Request(ADMIN_GET_USER, username=n) for n in names), len(names),
        workers=workers,
    )  # fmt: skip


def test_lookups_run_concurrently_and_come_back_in_plan_order():
    pool, stats, cache = FakePool(USERS), Stats(), scan.LookupCache()
    names = ["u0009", "u0003", "nobody", "u0007", "u0003"]
    plan = lookup_plan(*dict.fromkeys(names))
    got = [u["Username"] for u in scan.run(plan, pool, stats, cache)]
    assert got == ["u0009", "u0003", "u0007"]
    assert stats.requests == 4 and stats.rows == 3
    again = Stats()
    assert [u["Username"] for u in scan.run(plan, pool, again, cache)] == got
    assert again.requests == 0  # every answer came from the cache
    assert pool.pinned_on == [threading.main_thread()]  # not again: nothing was missing


def test_a_failing_lookup_is_raised_in_the_calling_thread():
    class FailingPool(FakePool):
        def get_user(self, stats, username):
            if username == "u0002":
                raise CognitoApiError("lookup failed", code="TooManyRequestsException")
            return super().get_user(stats, username)

    with pytest.raises(CognitoApiError, match="lookup failed"):
        list(
            scan.run(lookup_plan("u0001", "u0002"), FailingPool(USERS), Stats(), scan.LookupCache())
        )


class LimitedPool(FakePool):
    """Every page first takes its turn under a real rate limiter, as Pool.call does."""

    def __init__(self, users, limiter):
        super().__init__(users)
        self.limiter = limiter

    def list_user_pages(self, stats, filter=None, limit=None):
        for page in super().list_user_pages(stats, filter, limit):
            ticket = self.limiter.reserve()
            try:
                ticket.wait()
                ticket.start()
            finally:
                ticket.release()
            yield page


def test_closing_a_scan_gives_the_workers_reserved_slots_back():
    limiter = RateLimiter(2)  # 16 parts of 2 pages at 2/s: the workers queue for seconds
    rows = scan.run(PARTS_PLAN, LimitedPool(USERS, limiter), Stats(), scan.LookupCache())
    for _ in range(121):  # two pages at once, the third at its slot a window later
        next(rows)
    assert limiter.window().waiting  # the other workers' slots, up to seconds away
    rows.close()
    # Given back by the thread that closed the scan, before it returns (to PostgreSQL,
    # where the workers would be frozen), not whenever a worker runs again.
    assert limiter.window().waiting == []
    for thread in threading.enumerate():
        if thread.name.startswith("cognito-fdw"):
            thread.join(1.0)  # a worker stops waiting within a poll, not at its slot
            assert not thread.is_alive()
    assert limiter.window().waiting == []


class Log:
    def __init__(self):
        self.messages = []

    def __call__(self, message, level):
        self.messages.append((level, message))


def test_a_long_scan_reports_its_progress_and_a_short_one_does_not(monkeypatch):
    import logging

    monkeypatch.setattr(scan, "PROGRESS_SECONDS", 0.2)
    log = Log()
    pool = FakePool(USERS * 4, page_delay=0.05)  # 16 parts of 5 pages, 4 workers: ~1 s
    assert len(list(scan.run(PARTS_PLAN, pool, Stats(), scan.LookupCache(), log))) == 4000
    assert 2 <= len(log.messages) <= 6  # about one every 0.2 s, none in the first 0.2 s
    assert {level for level, _ in log.messages} == {logging.INFO}  # a NOTICE
    shape = re.compile(
        r"cognito_fdw: scan in progress: ([\d,]+) users of about 1,000, (\d+) of 16 parts "
        r"done, ([\d,]+) requests, \d+ s"
    )
    found = [shape.fullmatch(message) for _, message in log.messages]
    assert all(found), log.messages
    numbers = [[int(n.replace(",", "")) for n in match.groups()] for match in found]
    for column in zip(*numbers):  # users, requests and parts done only grow
        assert list(column) == sorted(column)
    quick = Log()
    list(scan.run(PARTS_PLAN, FakePool(USERS), Stats(), scan.LookupCache(), quick))
    assert quick.messages == []
