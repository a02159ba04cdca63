"""Running a request plan: sequential paging, lookups with a cache, the concurrent scan.

Only the backend's thread calls into PostgreSQL (docs/multicorn.md H8, :mod:`cognito_fdw.backend`):
worker threads only talk to Cognito and hand pages over through a bounded queue
(docs/multicorn.md M8).  Whatever they need is resolved on the backend's thread before the
first of them starts: the plan, and the pool's client with its credentials (the role and
a vault secret included), through :meth:`client.Pool.pinned`.  While the backend's thread
waits for a page it polls for a cancel through :func:`backend.cancel_pending` (never
``check_interrupts``, docs/multicorn.md H2) and then stops the workers; they also stop as
soon as the scan is closed early (LIMIT, an error, end_scan).
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from . import backend
from .api import PAGE_SIZE
from .client import Pool, Stats
from .pushdown import ADMIN_GET_USER, LOOKUPS, PARTS, Plan, Request

_POLL_SECONDS = 0.05
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


def run(plan: Plan, pool: Pool, stats: Stats, cache: LookupCache) -> Iterator[Mapping]:
    """The users the plan asks for (before OFFSET/LIMIT, which the caller applies)."""
    if plan.kind == PARTS:
        yield from _parts(plan, pool, stats)
    elif plan.kind == LOOKUPS:
        seen = set()
        for users in _lookups(plan, pool, stats, cache):
            for user in users:
                # Cognito may match case-insensitively: two values can find one user.
                if len(plan.requests) == 1 or user.get("Username") not in seen:
                    seen.add(user.get("Username"))
                    yield user
    elif plan.requests:
        # One stream, read by one worker a page ahead: the next request is in flight while
        # PostgreSQL consumes this page's rows.
        yield from _concurrently(plan.requests, 1, pool, stats, plan.limit)


def _lookups(plan: Plan, pool: Pool, stats: Stats, cache: LookupCache) -> Iterator[list]:
    """Each request's users, in plan order; up to ``plan.workers`` threads fetch the
    requests the cache cannot answer."""
    cached = {request: cache.get(request) for request in plan.requests}
    missing = [request for request, users in cached.items() if users is None]
    if plan.workers <= 1 or len(missing) <= 1:
        for request in plan.requests:
            users = cached[request]
            yield (
                users
                if users is not None
                else _remember(request, _fetch(request, pool, stats), cache)
            )
        return
    worker_stats = [Stats() for _ in missing]
    pool = pool.pinned()  # before any worker starts: they must not resolve credentials
    executor = ThreadPoolExecutor(
        max_workers=min(plan.workers, len(missing)), thread_name_prefix="cognito-fdw"
    )
    futures = {
        request: executor.submit(_fetch, request, pool, request_stats)
        for request, request_stats in zip(missing, worker_stats)
    }
    try:
        for request in plan.requests:
            if request in futures:
                yield _remember(request, _result(futures[request]), cache)
            else:
                yield cached[request]
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        for done in worker_stats:
            stats.add(done)


def _fetch(request: Request, pool: Pool, stats: Stats) -> list:
    if request.operation == ADMIN_GET_USER:
        user = pool.get_user(stats, request.username)
        return [] if user is None else [user]
    users = []
    for page in pool.list_user_pages(stats, filter=request.filter):
        users.extend(page)
    return users


def _remember(request: Request, users: list, cache: LookupCache) -> list:
    if len(users) <= PAGE_SIZE:
        cache.put(request, users)
    return users


def _result(future):
    """A worker's result, waited for in the main thread with cancels polled."""
    while True:
        try:
            return future.result(timeout=_POLL_SECONDS)
        except FutureTimeout:
            _check_cancel()


def _parts(plan: Plan, pool: Pool, stats: Stats) -> Iterator[Mapping]:
    """Read the plan's disjoint parts with a bounded pool of threads; yield from here."""
    yield from _concurrently(plan.requests, plan.workers, pool, stats)


def _concurrently(
    requests, workers: int, pool: Pool, stats: Stats, limit: int | None = None
) -> Iterator[Mapping]:
    """Page through each request in worker threads; yield the users from this thread."""
    pages: queue.Queue = queue.Queue(maxsize=workers + 1)
    stop = threading.Event()
    worker_stats = [Stats() for _ in requests]
    pool = pool.pinned()  # before any worker starts: they must not resolve credentials
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cognito-fdw")
    for request, part_stats in zip(requests, worker_stats):
        executor.submit(_read_part, pool, request, part_stats, pages, stop, limit)
    remaining = len(requests)
    try:
        while remaining:
            item = _next_page(pages)
            if item is None:
                continue
            kind, payload = item
            if kind == "error":
                raise payload
            if kind == "done":
                remaining -= 1
            else:
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


def _read_part(pool: Pool, request: Request, stats: Stats, pages, stop, limit=None) -> None:
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
        for page in pool.list_user_pages(stats, filter=request.filter, limit=limit):
            if not put(("page", page)) or stop.is_set():
                return
        put(("done", None))
    except Exception as exc:  # noqa: BLE001 - handed to the main thread, which raises it
        put(("error", exc))
