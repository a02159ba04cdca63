"""Running a request plan: sequential paging, lookups with a cache, the concurrent scan.

Only the backend's thread calls into PostgreSQL (docs/multicorn.md H8: no PostgreSQL call off
the backend thread, :mod:`cognito_fdw.pg.backend`): worker threads only talk to Cognito and hand
pages over through a bounded queue (docs/multicorn.md M8: threads run only while the backend is
in Python). Whatever they need is resolved on the backend's thread before the first of them
starts: the plan, and the pool's client with its credentials (the role and a vault secret
included), through :meth:`client.Pool.pinned`.  While the backend's thread waits for a page it
polls for a cancel through :func:`backend.cancel_pending` (never ``check_interrupts``,
docs/multicorn.md H2: check_interrupts longjmps through Python) and then stops the workers; they
also stop as soon as the scan is closed early (LIMIT, an error, end_scan).  Their turns under
the rate limit belong to the scan's :class:`ratelimit.Scope`: the backend's thread holds it
whenever it returns to PostgreSQL (where it keeps the GIL, and a worker frozen mid-turn would
hold the account's shared window), and closes it when the scan ends, releasing the slots they
reserved and did not use.

A scan that runs longer than PROGRESS_SECONDS says how far it got every PROGRESS_SECONDS, as a
NOTICE from the backend's thread with interrupts held (docs/multicorn.md H3: no report while a
cancel is pending): a person waiting in psql sees it, a client silences it with
``client_min_messages``.
"""

from __future__ import annotations

import collections
import logging
import queue
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from ..api import PAGE_SIZE
from ..pg import backend
from ..plans import ADMIN_GET_USER, LOOKUPS, PARTS, Plan, Request
from . import ratelimit
from .client import Pool, Stats

_POLL_SECONDS = 0.05
# A long scan's NOTICE: often enough for a person watching psql, rarely enough that a
# scan of a million users (11 minutes at 25 requests/s) says it 66 times, not per page.
PROGRESS_SECONDS = 10.0
# A worker whose page nobody takes for this long assumes the scan was abandoned (a
# statement that failed elsewhere never calls end_scan) and stops.
_ABANDON_SECONDS = 300.0


class LookupCache:
    """Answers of completed one-page lookups, for repeated values within one statement.

    A join calls execute() once per outer row; repeated outer values are answered from
    here.  ``owner`` identifies the statement: a different one empties the cache, since
    a statement that fails never calls end_scan.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self.owner = None
        self._entries: collections.OrderedDict[Request, list] = collections.OrderedDict()

    def claim(self, owner) -> None:
        if owner != self.owner:
            self.clear()
            self.owner = owner

    def clear(self) -> None:
        self._entries.clear()

    def get(self, request: Request) -> list | None:
        users = self._entries.get(request)
        if users is not None:
            self._entries.move_to_end(request)
        return users

    def put(self, request: Request, users: list) -> None:
        self._entries[request] = users
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def run(
    plan: Plan, pool: Pool, stats: Stats, cache: LookupCache, log: Callable | None = None
) -> Iterator[Mapping]:
    """The users the plan asks for (before OFFSET/LIMIT, which the caller applies).

    A long scan reports its progress through ``log`` (Multicorn's ``log_to_postgres``; none
    without it)."""
    scope = ratelimit.Scope()
    users = _users(plan, pool, stats, cache, log, scope)
    try:
        for user in users:
            with scope.outside():  # the row goes to PostgreSQL
                yield user
    finally:
        users.close()
        scope.close()


def _users(plan, pool, stats, cache, log, scope) -> Iterator[Mapping]:
    if plan.kind == PARTS:
        yield from _concurrently(
            plan.requests, plan.workers, pool, stats, scope, log=log, about=plan.estimated_rows
        )
    elif plan.kind == LOOKUPS:
        seen = set()
        for users in _lookups(plan, pool, stats, cache, scope):
            for user in users:
                # Cognito may match case-insensitively: two values can find one user.
                if len(plan.requests) == 1 or user.get("Username") not in seen:
                    seen.add(user.get("Username"))
                    yield user
    elif plan.requests:
        # One stream, read by one worker a page ahead: the next request is in flight while
        # PostgreSQL consumes this page's rows.  Its answer is kept in the shared cache if
        # it is small and read to its end (a PARTS scan, the whole pool, never is).
        request = plan.requests[0]
        yield from pool.remembered(
            stats,
            request.operation,
            cache_request(request, plan.limit),
            _concurrently(plan.requests, 1, pool, stats, scope, plan.limit, log=log),
            rows=True,  # a live stream's users are counted by list_user_pages
        )


def _lookups(
    plan: Plan, pool: Pool, stats: Stats, cache: LookupCache, scope: ratelimit.Scope
) -> Iterator[list]:
    """Each request's users, in plan order; up to ``plan.workers`` threads fetch the
    requests the cache cannot answer."""
    cached = {request: _recalled(request, pool, stats, cache) for request in plan.requests}
    missing = [request for request, users in cached.items() if users is None]
    if plan.workers <= 1 or len(missing) <= 1:
        for request in plan.requests:
            users = cached[request]
            yield (
                users
                if users is not None
                else _remember(request, _fetch(request, pool, stats), cache, pool)
            )
        return
    worker_stats = [Stats() for _ in missing]
    pool = pool.pinned()  # before any worker starts: they must not resolve credentials
    executor = ThreadPoolExecutor(
        max_workers=min(plan.workers, len(missing)), thread_name_prefix="cognito-fdw"
    )
    futures = {
        request: executor.submit(_fetch, request, pool, request_stats, scope)
        for request, request_stats in zip(missing, worker_stats)
    }
    try:
        for request in plan.requests:
            if request in futures:
                yield _remember(request, _result(futures[request]), cache, pool)
            else:
                yield cached[request]
    finally:
        scope.stopped.set()
        executor.shutdown(wait=False, cancel_futures=True)
        for done in worker_stats:
            stats.add(done)


def cache_request(request: Request, limit: int | None = None) -> tuple:
    """What tells the shared cache's answers to ``request`` apart (beside the pool, the
    credentials and the operation): its filter or user name, and the users asked for."""
    return (request.filter, request.username, limit)


def _recalled(request: Request, pool: Pool, stats: Stats, cache: LookupCache) -> list | None:
    """The request's users from this statement's cache, else from the shared one."""
    users = cache.get(request)
    if users is None:
        users = pool.recall(stats, request.operation, cache_request(request))
        if users is not None:
            stats.rows += len(users)
            cache.put(request, users)
    return users


def _fetch(request: Request, pool: Pool, stats: Stats, scope: ratelimit.Scope | None = None):
    """The request's users (a list); ``scope``: a worker's (see the module docstring)."""
    with ratelimit.scoped(scope):
        if request.operation == ADMIN_GET_USER:
            user = pool.get_user(stats, request.username)
            return [] if user is None else [user]
        users = []
        for page in pool.list_user_pages(stats, filter=request.filter):
            users.extend(page)
        return users


def _remember(request: Request, users: list, cache: LookupCache, pool: Pool) -> list:
    if len(users) <= PAGE_SIZE:
        cache.put(request, users)
    pool.remember(request.operation, cache_request(request), users)
    return users


def _result(future):
    """A worker's result, waited for in the main thread with cancels polled."""
    while True:
        try:
            return future.result(timeout=_POLL_SECONDS)
        except FutureTimeout:
            _check_cancel()


def _concurrently(
    requests,
    workers: int,
    pool: Pool,
    stats: Stats,
    scope: ratelimit.Scope,
    limit: int | None = None,
    log=None,
    about: int | None = None,
) -> Iterator[Mapping]:
    """Page through each request in worker threads; yield the users from this thread.

    Disjoint requests (the parts of the pool) are read by up to ``workers`` threads at
    once; ``about``: the users expected in all, for the progress NOTICE."""
    pages: queue.Queue = queue.Queue(maxsize=workers + 1)
    stop = scope.stopped
    worker_stats = [Stats() for _ in requests]
    pool = pool.pinned()  # before any worker starts: they must not resolve credentials
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cognito-fdw")
    for request, part_stats in zip(requests, worker_stats):
        executor.submit(_read_part, pool, request, part_stats, pages, scope, limit)
    remaining = len(requests)
    progress = _Progress(log, worker_stats, about, scope)
    try:
        while remaining:
            item = _next_page(pages)
            progress.tick(len(requests) - remaining)
            if item is None:
                continue
            kind, payload = item
            if kind == "error":
                raise payload
            if kind == "done":
                remaining -= 1
            else:
                progress.users += len(payload)
                yield from payload
    finally:
        stop.set()
        executor.shutdown(wait=False, cancel_futures=True)
        for done in worker_stats:
            stats.add(done)


def _next_page(pages: queue.Queue):
    try:
        return pages.get(timeout=_POLL_SECONDS)
    except queue.Empty:
        _check_cancel()
        return None


def _check_cancel() -> None:
    if backend.cancel_pending():
        raise backend.Cancelled(
            "canceling statement: cancel request or timeout during a Cognito scan",
            hint="The scan's worker threads were stopped.",
        )


class _Progress:
    """The NOTICE of a scan running longer than PROGRESS_SECONDS, every PROGRESS_SECONDS."""

    def __init__(self, log, worker_stats: list[Stats], about: int | None, scope):
        self.log = log
        self.scope = scope
        self.worker_stats = worker_stats
        self.about = about
        self.users = 0  # handed to PostgreSQL so far
        self.started = time.monotonic()
        self.due = self.started + PROGRESS_SECONDS

    def tick(self, parts_done: int) -> None:
        now = time.monotonic()
        if self.log is None or now < self.due:
            return
        self.due = now + PROGRESS_SECONDS
        # Ints other threads update: a read under the GIL, at worst a page behind.
        requests = sum(s.requests for s in self.worker_stats)
        seconds = now - self.started
        users = f"{self.users:,} users" + (f" of about {self.about:,}" if self.about else "")
        parts = len(self.worker_stats)
        read = f", {parts_done} of {parts} parts done" if parts > 1 else ""
        message = (
            f"cognito_fdw: scan in progress: {users}{read}, {requests:,} requests, {seconds:.0f} s"
        )
        with self.scope.outside():  # the NOTICE is PostgreSQL's code
            backend.report(self.log, message, logging.INFO)  # Multicorn's INFO is a NOTICE


def _read_part(pool: Pool, request: Request, stats: Stats, pages, scope, limit=None) -> None:
    stop = scope.stopped

    def put(item) -> bool:
        waited = 0.0
        while not stop.is_set():
            try:
                pages.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                waited += _POLL_SECONDS
                if waited > _ABANDON_SECONDS:
                    stop.set()
        return False

    try:
        with ratelimit.scoped(scope):
            for page in pool.list_user_pages(stats, filter=request.filter, limit=limit):
                if not put(("page", page)) or stop.is_set():
                    return
        put(("done", None))
    except Exception as exc:  # noqa: BLE001 - handed to the main thread, which raises it
        put(("error", exc))
