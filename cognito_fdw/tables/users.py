"""``object 'users'``: one row per user of the pool.

The columns are resolved against the column registry (:mod:`cognito_fdw.columns`), the
quals planned into requests by :mod:`cognito_fdw.pushdown` (one plan for the planner's
estimate, EXPLAIN and the scan), the requests run by :mod:`cognito_fdw.aws.scan`, and each user
record becomes a row in :mod:`cognito_fdw.rows`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

from .. import budget, nulls, plans, pushdown
from ..aws.client import Pool, Stats
from ..aws.scan import LookupCache, cache_request, run
from ..columns import (
    ALL_ATTRIBUTES,
    ATTRIBUTE,
    BUILTIN_COLUMNS,
    CUSTOM_KINDS,
    IMPORT_TYPES,
    STANDARD_ATTRIBUTES,
    ImportedColumn,
    resolve_columns,
)
from ..pg import backend
from ..quals import qual_text
from ..rows import database_encoding, read_columns, user_row
from ..values import JSON, STRING
from .importer import column_name
from .table import Table

# This backend's planned IS NULL tests on tables of users: module state, as long as the
# backend lives, shared by every wrapper instance (see nulls.NullTests).
PLANNED_NULL_TESTS = nulls.NullTests()


class Users(Table):
    """The ``users`` table: read-only; WHERE, LIMIT and joins pushed down (pushdown.py)."""

    object = "users"
    read_only_message = "cognito_fdw tables of users are read-only"
    read_only_hint = (
        "Change users in Cognito itself (console, AWS CLI or SDK); the table shows the "
        "change at the next query."
    )

    def __init__(self, options, pool: Pool, fdw_columns: Mapping, progress=None):
        super().__init__(options, pool, fdw_columns, progress)
        self.columns = resolve_columns(fdw_columns, pool.custom_attributes)
        self.searchable = pushdown.targets(fdw_columns, self.columns)
        self._cache = LookupCache()
        self._previous: tuple[object, frozenset[str]] = (None, frozenset())

    def _plan(self, quals, limit=None, offset=None, stable=(), first_scan=False) -> plans.Plan:
        """The one request plan that planning, EXPLAIN and execution all use."""
        options = self.options
        return pushdown.plan_scan(
            quals,
            self.searchable,
            estimated_users=self.pool.estimated_users,
            pushdown=options.pushdown,
            limit=limit,
            offset=offset,
            workers=options.scan_workers,
            username_lookup=options.username_lookup,
            collations=self.collations,
            null_tests=PLANNED_NULL_TESTS,
            stable=stable,
            first_scan=first_scan,
        )

    def _stable(self, quals, statement) -> tuple[frozenset[str], bool]:
        """The texts of the quals that held the same value at this statement's previous
        scan of the table, and whether this is its first scan (see pushdown.plan_scan);
        remembers these for the next one."""
        texts = frozenset(qual_text(q) for q in quals)
        first = self._previous[0] != statement
        before = frozenset() if first else self._previous[1]
        self._previous = (statement, texts)
        return texts & before, first

    # -- planning --------------------------------------------------------------------

    def rel_size(self, quals, columns) -> tuple[int, int, int]:
        # The cost is the requests, not the bytes: see plans.planner_size.  Startup above
        # zero makes PostgreSQL's Limit node over a full scan cost more than the pushed LIMIT
        # (at zero they tie and PostgreSQL keeps its own, which reads a page ahead it does
        # not need); no more than one row's width, no path's total.
        PLANNED_NULL_TESTS.note(quals)  # first: what tells IS NULL from a NULL key
        rows, width = plans.planner_size(self._plan(quals))
        return rows, width, width

    def path_keys(self):
        if not self.options.pushdown:
            return []
        return pushdown.path_keys(self.searchable, self.collations())

    def can_limit(self, limit, offset) -> bool:
        # Accepted, PostgreSQL drops its Limit node and rows() applies both.  With pushdown
        # off PostgreSQL keeps it (the scan still stops when it stops pulling).
        return self.options.pushdown

    def explain(self, quals, columns, limit=None, offset=None) -> list[str]:
        plan = self._plan(quals, limit, offset)
        return plan.explain() + self._cache_lines(plan)

    def _cache_lines(self, plan: plans.Plan) -> list[str]:
        """EXPLAIN's word on the shared cache: which answers it holds now, how old."""
        ttl = self.pool.cache_ttl
        if not plan.requests or plan.kind == plans.NONE or ttl <= 0:
            return []
        if plan.kind == plans.PARTS:
            return [f"Cognito: cache: not kept for a scan of the whole pool (cache_ttl {ttl:g} s)"]
        limit = plan.limit if plan.kind == plans.SCAN else None
        ages = [
            self.pool.cached_age(request.operation, cache_request(request, limit))
            for request in plan.requests
        ]
        held = [age for age in ages if age is not None]
        if not held:
            return [f"Cognito: cache: no answer cached yet, kept for {ttl:g} s (cache_ttl)"]
        return [
            f"Cognito: cache: {len(held)} of {len(ages)} answer{'s' if len(ages) != 1 else ''} "
            f"cached, the oldest {max(held):.1f} s old (cache_ttl {ttl:g} s): "
            f"{len(ages) - len(held)} request stream{'s' if len(ages) - len(held) != 1 else ''} "
            "to send"
        ]

    # -- scanning --------------------------------------------------------------------

    def rows(
        self, quals, columns: Sequence[str], stats: Stats, limit=None, offset=None
    ) -> Iterator[dict]:
        # Only what the query reads is converted: a value of an unread column that the
        # database encoding cannot hold must not fail the query.
        read = read_columns(self.columns, columns)
        encoding = database_encoding(backend.database_encoding())
        statement = backend.statement_started()
        plan = self._plan(quals, limit, offset, *self._stable(quals, statement))
        if plan.requests and plan.kind != plans.NONE:
            budget.statement.check_plan(
                plan.estimated_requests,
                self.options.max_requests_per_statement,
                _scan_words(plan),
            )
        self._cache.claim(statement)
        users = run(plan, self.pool, stats, self._cache, self.progress)
        try:
            for user in itertools.islice(users, offset or 0, _wanted(limit, offset)):
                yield user_row(user, read, encoding)
        finally:
            users.close()  # stops a concurrent scan's workers now, and counts their work

    def end_scan(self) -> None:
        self._cache.clear()

    @classmethod
    def imported_columns(cls, custom) -> list[ImportedColumn]:
        # The built-in columns, every standard attribute not named like one of them (the column
        # updated_at is UserLastModifiedDate: see the README's users table), then each custom
        # attribute under a name that needs no quoting.  sub is text, not uuid: only a text column
        # can be a join's path key, as Multicorn converts a uuid join parameter's empty value in C
        # under EXPLAIN, which crashes the backend (docs/multicorn.md H1: EXPLAIN of a by-reference
        # parameter crashes); docs/pushdown.md "Joining on sub" shows the joins.
        columns = [
            ImportedColumn(name, spec.imported_type) for name, spec in BUILTIN_COLUMNS.items()
        ]
        columns.append(ImportedColumn(ALL_ATTRIBUTES, IMPORT_TYPES[JSON]))
        taken = {column.name for column in columns}
        for name, kind in STANDARD_ATTRIBUTES.items():
            if name not in taken:
                columns.append(ImportedColumn(name, IMPORT_TYPES[kind]))
        taken = {column.name for column in columns}
        for attribute, data_type in sorted(custom.items()):
            name = column_name(attribute, taken)
            taken.add(name)
            kind = CUSTOM_KINDS.get(data_type, STRING)
            columns.append(ImportedColumn(name, IMPORT_TYPES[kind], {ATTRIBUTE: attribute}))
        return columns


def _scan_words(plan: plans.Plan) -> str:
    """The scan a refusal names: what it would read."""
    if plan.kind == plans.PARTS or (plan.kind == plans.SCAN and plan.requests[0].filter is None):
        return f"a scan of the whole user pool (about {plan.estimated_rows:,} users)"
    if plan.kind == plans.LOOKUPS:
        count = len(plan.requests)
        return f"{count} lookup{'s' if count != 1 else ''}"
    return f"a scan of {plan.requests[0].describe()}"


def _wanted(limit, offset) -> int | None:
    """How many users a pushed LIMIT/OFFSET needs from Cognito (None: all of them)."""
    if limit is None:
        return None
    return (offset or 0) + limit
