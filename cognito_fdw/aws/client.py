"""The only module that talks to Cognito: clients, paging, and request accounting.

Clients live at module level, one per backend and configuration: a wrapper instance is
re-created whenever options change, and creating a boto3 client costs ~70 ms, so the
instances share them (docs/multicorn.md M3: one instance per backend and table).

Resolving a client may read a vault secret, which calls into PostgreSQL, so it happens on the
backend's thread only (docs/multicorn.md H8: no PostgreSQL call off the backend thread;
:mod:`cognito_fdw.pg.backend`): :func:`client_for` refuses any other thread.  Code that starts
threads first takes :meth:`Pool.pinned`, a pool whose client is already resolved; a thread using
a pool that is not pinned gets :class:`~cognito_fdw.pg.backend.OffBackendThread` instead of a
credential lookup.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import os
import platform
import threading
import time
from collections.abc import Iterator, Mapping

import botocore
import botocore.config
import botocore.exceptions
import botocore.session

from .. import __version__, budget
from ..api import PAGE_SIZE
from ..errors import CognitoApiError, from_botocore_error, from_client_error, not_cognito_answer
from ..options import Options, nearest
from ..pg import backend
from . import attempts, credentials, retries, shared
from .quota import budget_key, limiter_for


def runtime() -> str:
    """What this backend runs the wrapper on, for EXPLAIN VERBOSE: the only way a client
    (``cognito-fdw doctor``) sees the Python embedded in the server without PL/Python, which
    cannot share a database with Multicorn2 on Python 3.12+ (docs/managed-postgresql.md)."""
    return (
        f"cognito_fdw {__version__}, Python {platform.python_version()}, "
        f"botocore {botocore.__version__}"
    )


DEFAULT_ESTIMATE = 1000
# What a COMMIT of membership changes makes stale (Pool.forget_memberships).
MEMBERSHIP_OPERATIONS = ("AdminListGroupsForUser", "ListUsersInGroup")

_clients: dict[tuple, object] = {}
_descriptions: dict[tuple, tuple[float, Mapping]] = {}
_lock = threading.Lock()
# Counts not yet added to the shared counters (flush_counts): (pool, region, endpoint,
# operation) -> counter -> value.  Any thread adds, the backend's thread flushes.
_pending: dict[tuple, dict[str, float]] = {}
_pending_lock = threading.Lock()


def _count(where: tuple, operation: str, **values: float) -> None:
    with _pending_lock:
        totals = _pending.get((*where, operation))
        if totals is None:
            totals = _pending[(*where, operation)] = {}
        for name, value in values.items():
            totals[name] = totals.get(name, 0) + value


def flush_counts() -> None:
    """Add this backend's counts to the counters every backend shares (backend's thread;
    kept for the next time if the shared state is busy)."""
    with _pending_lock:
        batch = dict(_pending)
        _pending.clear()
    if not batch:
        return
    if shared.safely(lambda store: store.add_counts(batch) or True) is None:
        for (*where, operation), values in batch.items():
            _count(tuple(where), operation, **values)


def _rows_in(answer: Mapping) -> int:
    for key in ("Users", "Groups"):
        if isinstance(answer.get(key), list):
            return len(answer[key])
    return 1 if any(key in answer for key in ("Username", "Group", "UserPool")) else 0


@dataclasses.dataclass
class Stats:
    """What one scan cost: API calls made (``requests``, and by operation), rows seen, the
    attempts beyond each call's first (``retries``) and those Cognito answered with a
    throttling error (``throttled``), the seconds calls took (``cognito_seconds``: their
    attempts and backoff, summed over threads) and the seconds spent waiting for the
    request-rate cap (``cap_seconds``), and when the scan started (``time.monotonic()``)."""

    requests: int = 0
    rows: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    operations: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    retries: int = 0
    throttled: int = 0
    cognito_seconds: float = 0.0
    cap_seconds: float = 0.0
    #: Request streams answered from the shared cache, those it could not answer, and the
    #: age in seconds of the oldest answer it gave (None: none).
    cache_hits: int = 0
    cache_misses: int = 0
    cache_age: float | None = None

    def add(self, other: Stats) -> None:
        """Count ``other``'s work (a scan worker's) in this one's."""
        self.requests += other.requests
        self.rows += other.rows
        self.operations.update(other.operations)
        self.retries += other.retries
        self.throttled += other.throttled
        self.cognito_seconds += other.cognito_seconds
        self.cap_seconds += other.cap_seconds
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.cached(other.cache_age)

    def cached(self, age: float | None) -> None:
        """Note an answer of that age from the cache (None: no answer)."""
        if age is not None:
            self.cache_age = age if self.cache_age is None else max(self.cache_age, age)

    def summary(self) -> str:
        ms = (time.monotonic() - self.started) * 1000
        cached = f", {self.cache_hits} from the cache" if self.cache_hits else ""
        return f"{self.requests} requests{cached}, {self.rows} rows, {ms:.0f} ms"


def client_for(options: Options, table: int | None = None):
    """The backend's client for ``options`` (those of foreign table ``table``, by OID, or
    None where no table is known: IMPORT FOREIGN SCHEMA), with credentials from
    :mod:`credentials`.

    Cached per configuration and credential source; a changed secret (a rotated vault
    secret) replaces the client of its source instead of adding one.  Backend's thread only
    (OffBackendThread elsewhere): it may read a vault secret.
    """
    backend.require_backend_thread("client.client_for")
    found = credentials.for_options(options, table)
    slot = (
        options.region,
        options.endpoint_url,
        options.connect_timeout,
        options.read_timeout,
        options.max_attempts,
        options.retry_mode,
        found.slot(),
    )
    key = found.version()
    with _lock:
        cached = _clients.get(slot)
        if cached is None or cached[0] != key:
            session = found.session(options.region)
            config = botocore.config.Config(
                connect_timeout=options.connect_timeout,
                read_timeout=options.read_timeout,
                retries=retries.config(options),
                user_agent_extra=f"cognito-fdw/{__version__}",
                # One connection per scan worker (at most 16) and the main thread.
                max_pool_connections=20,
            )
            client = session.client("cognito-idp", endpoint_url=options.endpoint_url, config=config)
            attempts.register_hooks(client, options.max_attempts)
            cached = _clients[slot] = (key, client)
        return cached[1]


_CONNECTION_ERRORS = (botocore.exceptions.EndpointConnectionError,
                      botocore.exceptions.ConnectTimeoutError)  # fmt: skip


def aws_regions() -> frozenset[str]:
    """Every region of every AWS partition where botocore's endpoint data has Cognito user
    pools (``cognito-idp``)."""
    session = botocore.session.Session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("cognito-idp", partition_name=partition)
    )


def _unknown_region(options: Options, exc) -> tuple[str, list[str]] | None:
    """(region, the nearest AWS regions) when a request to AWS could not connect and the
    region is none botocore knows; None otherwise (a new region botocore does not list yet
    still works wherever it answers)."""
    if options.endpoint_url is not None or not isinstance(exc, _CONNECTION_ERRORS):
        return None
    known = aws_regions()
    if not known or options.region in known:
        return None
    return options.region, nearest(options.region, known)


class Pool:
    """One user pool, reached with one configuration."""

    def __init__(self, options: Options, table: int | None = None):
        self.options = options
        self.table = table  # the foreign table's OID: whose server's secret it may use
        self._client = None  # set in a pinned copy only
        self.cache_ttl = options.cache_ttl  # 0 in an uncached() copy
        self._signed: tuple | None = None  # (statement, the signer of the cache's keys)
        # Keyed by endpoint and account: the quota Cognito enforces is per account and region.
        self.limiter = limiter_for(budget_key(options), options.max_requests_per_second)
        path = getattr(self.limiter, "path", None)
        if path is not None:  # for the rate_budget view: which window, what cap
            shared.safely(
                lambda store: store.note_budget(
                    os.path.basename(path), *self.where[1:], options.max_requests_per_second
                )
            )

    @property
    def where(self) -> tuple[str, str, str]:
        """(pool id, region, endpoint): what the counters and the cache's entries name."""
        options = self.options
        return (options.user_pool_id, options.region, options.endpoint_url or "AWS")

    def uncached(self) -> Pool:
        """This pool, always asking Cognito (a writable table's reads)."""
        copy_ = copy.copy(self)
        copy_.cache_ttl = 0.0
        return copy_

    # -- the shared cache (backend's thread only: elsewhere nothing is cached) ----------------

    def _cache_key(self, store, operation: str, request) -> str:
        return store.digest((self._signer(), self.where, operation, request))

    def _signer(self) -> tuple:
        """Who signs: the key id, the secret and token, the role assumed and with what; a
        wrong secret for a known key id is another signer.  Only ever hashed
        (``Store.digest``), and resolved once per statement (a vault secret is read once)."""
        statement = backend.statement_started()
        if self._signed is None or self._signed[0] != statement:
            found = credentials.for_options(self.options, self.table)
            source, keys, vault, role = (
                found.source,
                found.keys,
                found.source.vault,
                found.source.role,
            )
            signer = (
                source.kind,
                source.key_id,
                source.profile,
                vault and (vault.relation, vault.column, vault.value),
                # Field by field: a repr() leaves the external id out.
                role
                and (
                    role.arn,
                    role.session_name,
                    role.duration,
                    role.external_id,
                    role.sts_endpoint_url,
                ),
                keys and (keys.secret_key, keys.token),
            )
            self._signed = (statement, signer)
        return self._signed[1]

    def recall(self, stats: Stats, operation: str, request) -> list | None:
        """The cached answer to ``operation`` with ``request`` (its parameters, hashable),
        if one younger than ``cache_ttl`` exists; counted as a hit or a miss."""
        if self.cache_ttl <= 0 or not backend.on_backend_thread():
            return None
        found = shared.safely(
            lambda store: store.get(self._cache_key(store, operation, request), self.cache_ttl)
        )
        if found is None:
            stats.cache_misses += 1
            _count(self.where, operation, cache_misses=1)
            return None
        stats.cache_hits += 1
        stats.cached(found[1])
        _count(self.where, operation, cache_hits=1)
        return found[0]

    def cached_age(self, operation: str, request) -> float | None:
        """How old the cached answer is (seconds), None when there is none within the TTL
        (for EXPLAIN: nothing is counted)."""
        if self.cache_ttl <= 0 or not backend.on_backend_thread():
            return None
        age = shared.safely(lambda store: store.age(self._cache_key(store, operation, request)))
        return age if age is not None and 0 <= age < self.cache_ttl else None

    def remember(self, operation: str, request, value: list) -> None:
        """Keep ``value`` as the answer to ``operation`` with ``request``, if it is small
        enough (see :mod:`cognito_fdw.shared`)."""
        if self.cache_ttl <= 0 or not backend.on_backend_thread():
            return
        if len(value) > shared.MAX_ENTRY_ITEMS:
            return
        shared.safely(
            lambda store: store.put(
                self._cache_key(store, operation, request), self.where, operation, value
            )
        )

    def remembered(
        self, stats: Stats, operation: str, request, live: Iterator, rows: bool = False
    ) -> Iterator:
        """The items of ``live`` (a stream of ``operation`` with ``request``, not yet
        started), from the cache when it has them; a stream read to its end whole and small
        enough is kept.  A stream stopped early is not.  ``rows``: count the cached items
        as ``stats.rows`` (the caller counts the live ones' as they are read)."""
        found = self.recall(stats, operation, request)
        if found is not None:
            if rows:
                stats.rows += len(found)
            yield from found
            return
        kept: list | None = [] if self.cache_ttl > 0 else None
        for item in live:
            if kept is not None:
                kept.append(item)
                if len(kept) > shared.MAX_ENTRY_ITEMS:
                    kept = None  # too big to keep: memory stays flat whatever the stream
            yield item
        if kept is not None:
            self.remember(operation, request, kept)

    def forget_memberships(self) -> None:
        """Membership answers of this pool are stale (a COMMIT changed memberships)."""
        shared.safely(lambda store: store.forget(self.where, MEMBERSHIP_OPERATIONS))

    @property
    def client(self):
        if self._client is not None:
            return self._client
        # Looked up per request: a vault secret is re-read when its cache time is up.
        return client_for(self.options, self.table)

    def pinned(self) -> Pool:
        """This pool with its client resolved now, for threads to share (backend's thread only).

        The copy never resolves credentials again (its client's keys stay those read now:
        once per scan, even with ``secret_cache_seconds`` 0) and shares the rate limiter.
        """
        pinned = copy.copy(self)
        pinned._client = self.client
        return pinned

    def call(self, operation: str, stats: Stats | None = None, **params) -> Mapping:
        """Call a Cognito API operation by its API name (``ListUsers``); translate every
        failure into a :class:`CognitoApiError` naming the operation."""
        budget.statement.charge(self.options.max_requests_per_statement, operation)
        # Resolved here, on the calling thread: run_cancellable's helper thread gets a bound
        # method and its arguments, nothing it would have to look up.
        client = self.client
        method = getattr(client, botocore.xform_name(operation))
        params["UserPoolId"] = self.options.user_pool_id
        # Reserved in the calling thread (a scan worker's reservation ends with its scan:
        # ratelimit.stop_waiting_on), waited for and recorded as the request is sent
        # (attempts.py's before-send hook); the deadline counts from the slot.
        ticket = self.limiter.reserve()
        started = time.monotonic()
        counted = []

        def count() -> None:
            # As the request goes out (or is answered without a send: a test's Stubber); a
            # call abandoned while it waited for the rate cap (a LIMIT reached while a
            # worker read a page ahead) sent nothing and counts nothing.
            if counted:
                return
            counted.append(True)
            if stats is not None:
                stats.requests += 1
                stats.operations[operation] += 1

        in_flight = attempts.InFlight(
            ticket, max(started, ticket.slot) + self.options.request_deadline, on_send=count
        )

        def send():
            return attempts.send(in_flight, method, params)

        failed = True
        try:
            answer = backend.run_cancellable(send, deadline=in_flight.deadline)
            count()
            failed = False
            return answer
        except backend.DeadlinePassed:
            raise self._deadline_error(operation, in_flight.attempts) from None
        except botocore.exceptions.ClientError as exc:
            raise from_client_error(
                exc, operation, self.options.user_pool_id, client.meta.endpoint_url
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise from_botocore_error(
                exc,
                operation,
                self.options.endpoint_url or client.meta.endpoint_url,
                _unknown_region(self.options, exc),
            ) from None
        finally:
            # A helper thread still sending (a cancel, the deadline) starts no attempt
            # more; a slot reserved and never used holds up nobody.
            in_flight.abandon()
            cognito_seconds = time.monotonic() - started - in_flight.waited
            _count(
                self.where,
                operation,
                requests=len(counted),
                throttled=in_flight.throttled,
                retries=max(0, in_flight.attempts - 1),
                errors=int(failed),
                rows=0 if failed else _rows_in(answer),
                cognito_ms=cognito_seconds * 1000,
                cap_ms=in_flight.waited * 1000,
            )
            if stats is not None:
                stats.retries += max(0, in_flight.attempts - 1)
                stats.throttled += in_flight.throttled
                stats.cap_seconds += in_flight.waited
                stats.cognito_seconds += cognito_seconds

    def _deadline_error(self, operation: str, attempts: int) -> CognitoApiError:
        seconds = self.options.request_deadline
        return CognitoApiError(
            f"Cognito {operation} got no answer within request_deadline "
            f"({seconds:g} s) after {attempts} attempt{'s' if attempts != 1 else ''} "
            f"({self.options.endpoint_url or 'AWS'})",
            hint="The endpoint did not answer in time (stalled, overloaded or unreachable). "
            "Check endpoint_url and the network; if Cognito is only slow, raise "
            "request_deadline on the server (a table may only lower it).",
            detail=f"read_timeout {self.options.read_timeout:g} s, max_attempts "
            f"{self.options.max_attempts}",
            code="RequestDeadline",
        )

    def list_user_pages(
        self, stats: Stats, filter: str | None = None, limit: int | None = None
    ) -> Iterator[list]:
        """ListUsers' pages, each as the list of its users.

        ``limit`` bounds the users asked for (an emulator may still send more, so callers
        apply their own limit too).
        """
        params = {"Filter": filter} if filter else {}
        for users in self.pages("ListUsers", "Users", "PaginationToken", stats, limit, **params):
            stats.rows += len(users)
            yield users

    def pages(
        self, operation: str, key: str, token_key: str, stats: Stats, limit=None, **params
    ) -> Iterator[list]:
        """Page through a Cognito list API, yielding each page's ``key`` list.

        ``limit`` bounds the items asked for (an endpoint may still send more, so callers
        apply their own limit too).  Short or empty pages with a token are followed; a page
        without the list (a truncated or malformed body) and a token seen before are errors,
        never a short answer or a loop.
        """
        token, seen, remaining = None, set(), limit
        while remaining is None or remaining > 0:
            size = PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
            page = self.call(
                operation, stats, Limit=size, **params, **({token_key: token} if token else {})
            )
            items = page.get(key)
            if not isinstance(items, list):
                endpoint = self.options.endpoint_url or "AWS"
                stranger = not_cognito_answer(page, operation, endpoint)
                if stranger is not None:
                    raise stranger
                raise CognitoApiError(
                    f"Cognito {operation} answered without a list of {key.lower()} (a truncated "
                    "or malformed response); stopped rather than return a partial answer",
                    hint="Retry the query; if it persists, check endpoint_url and any proxy "
                    "between the database server and Cognito.",
                    detail=f"after {stats.requests} requests",
                    code="MalformedResponse",
                )
            yield items
            if remaining is not None:
                remaining -= len(items)
            token = page.get(token_key)
            if not token:
                return
            if token in seen:
                raise CognitoApiError(
                    f"Cognito {operation} returned a {token_key} it had already returned; "
                    "stopped instead of reading the same page again",
                    hint="This is a fault of the endpoint. Retry the query; if it persists, "
                    "report it to the endpoint's operator (or AWS support).",
                    detail=f"after {stats.requests} requests",
                    code="RepeatedPaginationToken",
                )
            seen.add(token)

    def items(self, operation: str, key: str, stats: Stats, **params) -> Iterator[Mapping]:
        """The ``key`` items of every page of a list API paged by ``NextToken`` (ListGroups,
        ListUsersInGroup, AdminListGroupsForUser), one by one."""
        for page in self.pages(operation, key, "NextToken", stats, **params):
            yield from page

    def describe(self) -> Mapping:
        """DescribeUserPool's UserPool, cached per backend for a while (its quota is 15/s)."""
        key = (self.options.region, self.options.endpoint_url, self.options.user_pool_id)
        cached = _descriptions.get(key)
        if cached and time.monotonic() - cached[0] < self.options.describe_ttl:
            return cached[1]
        pool = self.user_pool()
        _descriptions[key] = (time.monotonic(), pool)
        return pool

    def user_pool(self, stats: Stats | None = None) -> Mapping:
        """DescribeUserPool's UserPool, asked now; an answer without one (another web
        server's 200) is a :class:`CognitoApiError` saying what came back."""
        answer = self.call("DescribeUserPool", stats)
        pool = answer.get("UserPool")
        if not isinstance(pool, Mapping):
            endpoint = self.options.endpoint_url or "AWS"
            stranger = not_cognito_answer(answer, "DescribeUserPool", endpoint)
            raise stranger or CognitoApiError(
                "Cognito DescribeUserPool answered without the user pool (a truncated or "
                "malformed response)",
                hint="Retry the query; if it persists, check endpoint_url and any proxy "
                "between the database server and Cognito.",
                code="MalformedResponse",
            )
        return pool

    def get_user(self, stats: Stats, username: str) -> Mapping | None:
        """AdminGetUser: the user, or None when there is no such user."""
        try:
            user = self.call("AdminGetUser", stats, Username=username)
        except CognitoApiError as exc:
            if exc.code == "UserNotFoundException":
                return None
            raise
        stats.rows += 1
        return user

    def custom_attributes(self) -> dict[str, str]:
        """The pool's custom attributes: ``custom:x`` (or ``dev:custom:x``) -> data type."""
        return {
            attr["Name"]: attr.get("AttributeDataType", "String")
            for attr in self.describe().get("SchemaAttributes", [])
            if attr["Name"].startswith(("custom:", "dev:custom:"))
        }

    def estimated_users(self) -> int:
        """The planner's row estimate; an emulator that reports 0 or nothing gets a default."""
        return int(self.describe().get("EstimatedNumberOfUsers") or 0) or DEFAULT_ESTIMATE
