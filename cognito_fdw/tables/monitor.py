"""The numbers in SQL: objects ``request_stats``, ``rate_budget`` and ``cache``.

They read the state every backend of the PostgreSQL server shares (:mod:`cognito_fdw.aws.shared`
and the rate windows of :mod:`cognito_fdw.aws.quota`), never Cognito: no credential is used
and none is shown (a budget is named by its window's file, a hash, not by its key id).
``sql/monitor.sql`` puts views over them for a monitoring role (``pg_monitor``), which
needs neither USAGE on a server nor a user mapping: Multicorn reads a table's options
without a mapping (and the pool id a server names is public in ``pg_foreign_server``).

* ``request_stats``: per pool (id, region, endpoint) and operation, since the file was
  made: requests, throttled answers, retries, failed requests, rows, milliseconds in
  Cognito and waiting for the cap, answers from the cache and misses.  A backend adds its
  counts at the end of each scan.
* ``rate_budget``: per budget (region, endpoint, account) now: its cap, the requests sent
  in the last second, and the requests waiting for a slot.
* ``cache``: per pool and operation, the entries held, their bytes and the oldest one's
  age; ``DELETE`` drops them (``cognito_fdw_monitor.clear_cache()``), a superuser's alone.

The state is every database's, so the role running a query of these objects must be a
superuser or have ``pg_monitor``'s privileges, whoever owns the table.
"""

from __future__ import annotations

import abc
import json
import os
import time
from collections.abc import Iterator

from ..aws import shared
from ..aws.client import Stats, flush_counts
from ..aws.quota import read_window, shared_directory
from ..aws.ratelimit import WINDOW_SECONDS
from ..columns import Field
from ..errors import CognitoFdwError
from ..pg import backend
from ..rows import record_row
from ..values import NUMBER, STRING
from .table import COLUMN_WIDTH, Table

_WHERE = {
    "pool_id": Field("pool_id", STRING, "the user pool id"),
    "region": Field("region", STRING, "its region"),
    "endpoint": Field("endpoint", STRING, "the endpoint (`AWS` or `endpoint_url`)"),
}
STATS_COLUMNS = {
    **_WHERE,
    "operation": Field("operation", STRING, "the Cognito operation (`ListUsers`, ...)"),
    **{
        name: Field(name, NUMBER, doc, type_name)
        for name, doc, type_name in (
            ("requests", "requests sent", "bigint"),
            ("throttled", "attempts Cognito answered TooManyRequestsException", "bigint"),
            ("retries", "attempts beyond each request's first", "bigint"),
            ("errors", "requests that failed in the end", "bigint"),
            ("rows", "users, groups or records answered", "bigint"),
            ("cognito_ms", "milliseconds in Cognito requests", "double precision"),
            ("cap_ms", "milliseconds waiting for the request-rate cap", "double precision"),
            ("cache_hits", "answers from the cache (no request)", "bigint"),
            ("cache_misses", "request streams the cache could not answer", "bigint"),
        )
    },
}
BUDGET_COLUMNS = {
    "budget": Field("budget", STRING, "the budget's id (its window file; no key id)"),
    "region": Field("region", STRING, "its region"),
    "endpoint": Field("endpoint", STRING, "the endpoint (`AWS` or `endpoint_url`)"),
    "cap": Field("cap", NUMBER, "max_requests_per_second (the highest of its servers)", "integer"),
    "sent_last_second": Field(
        "sent_last_second", NUMBER, "requests sent in the last second", "integer"
    ),
    "waiting": Field("waiting", NUMBER, "requests waiting for their slot now", "integer"),
}
CACHE_COLUMNS = {
    "entry": Field("entry", STRING, "the row id for DELETE: a JSON array"),
    **_WHERE,
    "operation": Field("operation", STRING, "the Cognito operation"),
    "entries": Field("entries", NUMBER, "answers held", "bigint"),
    "bytes": Field("bytes", NUMBER, "their size", "bigint"),
    "oldest_seconds": Field(
        "oldest_seconds", NUMBER, "the oldest one's age, seconds", "double precision"
    ),
}


class _Monitor(Table):
    """A table of the shared state: no request, no credential."""

    imported = False

    def __init__(self, options, pool, fdw_columns, progress=None):
        super().__init__(options, pool, fdw_columns, progress)
        self.columns = self.record_columns()

    def rel_size(self, quals, columns) -> tuple[int, int, int]:
        return 10, len(columns) * COLUMN_WIDTH, 0

    def explain(self, quals, columns, limit=None, offset=None) -> list[str]:
        why = shared.unavailable()
        return ["Cognito: no request: the server's shared state"] + (
            [f"Cognito: shared state unavailable: {why}"] if why else []
        )

    @abc.abstractmethod
    def records(self) -> list[dict]:
        """The rows, as records whose fields are the column names."""

    def rows(self, quals, columns, stats: Stats, limit=None, offset=None) -> Iterator[dict]:
        # The state is the whole PostgreSQL server's (every database's pools and counters),
        # and any role that may create a foreign table can name this object: the role that
        # runs the query must be a monitoring one, whoever owns the table.
        if not backend.current_role_may_monitor():
            raise CognitoFdwError(
                f"cognito_fdw: reading {self.object} needs pg_monitor",
                hint="It shows every database's Cognito pools and counters: GRANT pg_monitor "
                "to the role, or read the views of sql/monitor.sql as a member of pg_monitor.",
            )
        for record in self.records():
            stats.rows += 1
            yield record_row(record, self.columns)


class RequestStats(_Monitor):
    object = "request_stats"
    fields = STATS_COLUMNS

    def records(self) -> list[dict]:
        flush_counts()  # this backend's own counts first
        names = list(STATS_COLUMNS)
        return [dict(zip(names, row)) for row in shared.safely(lambda s: s.counters(), [])]


class RateBudget(_Monitor):
    object = "rate_budget"
    fields = BUDGET_COLUMNS

    def records(self) -> list[dict]:
        data_directory = backend.data_directory()
        if data_directory is None:
            return []
        directory = shared_directory(data_directory)
        records = []
        for window, region, endpoint, cap in shared.safely(lambda s: s.budgets(), []):
            path = os.path.join(directory, window)
            try:
                state = read_window(path)
            except FileNotFoundError:
                continue  # noted, never used since the boot
            except OSError as exc:
                raise CognitoFdwError(
                    f"cognito_fdw cannot read its request-rate window {window}: {exc.strerror}"
                ) from None
            recent = time.monotonic() - WINDOW_SECONDS
            records.append(
                {
                    "budget": window.removesuffix(".window")[:12],
                    "region": region,
                    "endpoint": endpoint,
                    "cap": cap,
                    "sent_last_second": sum(1 for sent in state.sent if sent > recent),
                    "waiting": len(state.waiting),
                }
            )
        return records


class CacheEntries(_Monitor):
    object = "cache"
    fields = CACHE_COLUMNS

    def records(self) -> list[dict]:
        names = list(CACHE_COLUMNS)[1:]
        return [
            {"entry": json.dumps(list(row[:4])), **dict(zip(names, row))}
            for row in shared.safely(lambda s: s.entries(), [])
        ]

    def rowid_column(self) -> str:
        return "entry"

    def delete(self, rowid) -> None:
        # Emptying the cache sends every backend of every database back to Cognito: a
        # superuser's decision (cognito_fdw_monitor.clear_cache()), whoever owns the table.
        if not backend.current_role_is_superuser():
            raise CognitoFdwError(
                "cognito_fdw: only a superuser may clear the cache",
                hint="A superuser runs SELECT cognito_fdw_monitor.clear_cache().",
            )
        try:
            pool_id, region, endpoint, operation = json.loads(rowid)
        except (TypeError, ValueError):
            raise CognitoFdwError(f"invalid cache entry value {rowid!r}") from None
        shared.safely(lambda s: s.forget((pool_id, region, endpoint), (operation,)))
