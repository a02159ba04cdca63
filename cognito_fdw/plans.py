"""What a plan is and how it is shown: the requests, the refusals and their reasons, the
planner's cost, EXPLAIN's lines (pure).

:mod:`pushdown` decides a :class:`Plan` from the quals; :mod:`scan` runs it; ``explain()``
and ``execute()`` both render it here, so EXPLAIN says what the scan sends.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence

from .api import MAX_FILTER_LENGTH, PAGE_SIZE
from .columns import SEARCHABLE

ADMIN_GET_USER = "AdminGetUser"
LIST_USERS = "ListUsers"
# AdminGetUser's API documentation: it "contributes to your monthly active user (MAU) count
# for the purpose of billing".  No other operation the wrapper calls says so.
BILLED = (
    "AdminGetUser counts each user it finds as a monthly active user (MAU) for billing "
    "(option username_lookup 'admin_get_user'; 'list_users' is not billed)"
)

# Planner cost units per Cognito request (a page read from disk costs 1): a round trip
# under a quota of 30 requests/s.  Chosen so a full scan of fewer than 10,000 users (167
# pages, or 16 parts of 11) stays under PostgreSQL's default jit_above_cost of 100,000.
REQUEST_COST = 500
MAX_LOOKUPS = 50  # distinct IN values looked up one by one; a longer list scans the pool

# The columns Cognito searches, in words (columns.SEARCHABLE).
_SEARCHED = ", ".join(s.column for s in SEARCHABLE.values())
_SEARCHED = " and ".join(_SEARCHED.rsplit(", ", 1))

# Why a qual was left to PostgreSQL, for every table.  This table is the complete list of
# refusals: EXPLAIN shows no other reason.  ``{found_by}`` is the Refusal's own.
REFUSALS = {
    "off": "pushdown is off (option pushdown 'false')",
    "column": f"Cognito cannot search this column (only {_SEARCHED})",
    "type": "the column's type compares differently from Cognito: only text and varchar "
    "(boolean for enabled, uuid for sub) are pushed; citext is case-insensitive, a domain "
    "or char(n) has its own equality",
    "operator": "Cognito has no such search: only =, IN/= ANY and LIKE 'prefix%' are pushed "
    "(no LIKE for status; for enabled only =, <> and IS with true or false)",
    "null": "IS NULL and IS NOT NULL have no Cognito filter",
    "collation": "the database has a nondeterministic collation, and Multicorn does not say "
    "which collation a comparison uses: Cognito's exact match could miss rows the collation "
    "counts as equal (table option deterministic_collations 'true' asserts that no "
    "comparison on this table uses one)",
    "value": "the value is not a string (for a uuid sub: not a UUID)",
    "mistyped": "the value is not the list an array gives: Multicorn converted the "
    "expression with a wrong type (docs/multicorn.md H12: the type read from the wrong "
    "place); write it as a sub-select, "
    "= ANY((SELECT ARRAY[...]))",
    "empty": "an empty string: Cognito's handling of an empty filter value is not proven "
    "(an empty filter lists every user)",
    "escape": 'the value holds " or \\: the API escapes them, but emulators do not unescape '
    "them, so the match is not provably exact",
    "control": "the value holds a control character (newline, tab, ...) that the filter "
    "grammar cannot carry exactly",
    "whitespace": "the value starts or ends with white space, which Cognito may trim",
    "length": f"the filter would exceed Cognito's {MAX_FILTER_LENGTH}-character maximum",
    "like-escape": "the LIKE pattern has a backslash escape before its first wildcard",
    "like-prefix": "the LIKE pattern starts with a wildcard: there is no prefix to search by",
    "enabled-value": "enabled is compared with something other than true or false",
    "in-bound": f"more than {MAX_LOOKUPS} distinct IN values: one lookup each would cost more "
    "than it saves",
    "not-chosen": "Cognito takes one filter per request and a more selective qual was pushed",
    # Tables of names (groups, group_members): Cognito finds a row by a name only.
    "not-a-key": "Cognito finds {found_by} only",
    "name-type": "the column's type compares differently from Cognito's exact names: only "
    "text and varchar are pushed (citext ignores case)",
    "name-operator": "Cognito has no such search: only = and IN/= ANY are pushed",
    "name-not-chosen": "one condition is sent to Cognito per scan, and a more selective one was",
    # user_pool: one request whatever the quals.
    "one-row": "the pool is one row, read whole",
}


@dataclasses.dataclass(frozen=True)
class Request:
    """One Cognito request stream: AdminGetUser for ``username``, else paged ListUsers."""

    operation: str
    filter: str | None = None
    username: str | None = None

    def describe(self) -> str:
        if self.operation == ADMIN_GET_USER:
            return f"AdminGetUser Username: {json.dumps(self.username, ensure_ascii=False)}"
        return f"ListUsers Filter: {self.filter}" if self.filter else "ListUsers (no filter)"


@dataclasses.dataclass(frozen=True)
class Refusal:
    qual: str
    reason: str  # a key of REFUSALS
    found_by: str = ""  # for "not-a-key": what the table finds by which columns

    def describe(self) -> str:
        return f"{self.qual}: {REFUSALS[self.reason].format(found_by=self.found_by)}"


# A plan's kind: how the scan reaches Cognito (see Plan).  The first three read users;
# BY_USER, BY_GROUP and ALL read the tables of names (groups, group_members); NONE any.
SCAN, LOOKUPS, PARTS, NONE = "scan", "lookups", "parts", "none"
BY_USER, BY_GROUP, ALL = "by user", "by group", "all"


def no_request_line(condition: str) -> str:
    """EXPLAIN's line for a scan that asks nothing because ``condition`` cannot be true."""
    return (
        "Cognito: no request: the condition cannot be true (NULL, an empty list or no name "
        f"Cognito could hold): {condition}"
    )


def condition_lines(pushed: str | None, refused: Sequence[Refusal]) -> list[str]:
    """EXPLAIN's lines for a scan's conditions: the one ``pushed`` down to Cognito (its
    text, or None), then each one left to PostgreSQL, with why."""
    lines = [f"Cognito: pushed down: {pushed}"] if pushed else []
    return lines + [f"Cognito: left to PostgreSQL: {r.describe()}" for r in refused]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one scan asks Cognito, for every table.

    ``kind`` is SCAN (one paged ListUsers, maybe filtered, maybe limited), LOOKUPS (each
    request answers one value, up to ``workers`` at a time; users are de-duplicated by
    username), PARTS (disjoint parts of the pool, read concurrently by ``workers``
    threads) or NONE (``pushed`` cannot be true: no request, no row).  A table of names
    (groups, group_members) plans BY_USER or BY_GROUP (requests for each of ``values``, the
    user or group names ``pushed`` allows) or ALL (every group), or NONE; it has no
    :class:`Request` of users and shows its own requests in EXPLAIN (:meth:`explain` is the
    users table's).  ``estimated_rows`` is 0 when the quals do not decide it (group_members
    read whole: the pool's size does, asked only by the planner).
    """

    kind: str
    requests: tuple[Request, ...]
    estimated_rows: int
    pushed: str | None = None
    refused: tuple[Refusal, ...] = ()
    limit: int | None = None  # users wanted from Cognito: OFFSET + LIMIT
    workers: int = 1
    collations: tuple[str, ...] = ()  # the nondeterministic collations that refused quals
    values: tuple[str, ...] = ()  # BY_USER, BY_GROUP: the names, in the order given

    @property
    def estimated_requests(self) -> int:
        if self.limit is not None:
            return max(1, math.ceil(self.limit / PAGE_SIZE)) if self.requests else 0
        per_request = self.estimated_rows / max(1, len(self.requests))
        pages = max(1, math.ceil(per_request / PAGE_SIZE))
        return sum(1 if r.operation == ADMIN_GET_USER else pages for r in self.requests)

    def explain(self) -> list[str]:
        """EXPLAIN's lines: the requests, the exact filters, the page size, the estimate."""
        count = self.estimated_requests
        about = f"about {count} request{'s' if count != 1 else ''}"
        if self.kind == PARTS:
            lines = [
                f"Cognito: ListUsers in {len(self.requests)} concurrent parts "
                f'(Filter: sub ^= "0" .. sub ^= "f"), {self.workers} workers, '
                f"page size {PAGE_SIZE}, {about}"
            ]
        elif self.kind == NONE:
            return [no_request_line(self.pushed)]
        elif not self.requests:
            lines = ["Cognito: no request (LIMIT 0)"]
        elif self.kind == LOOKUPS:
            paged = any(r.operation == LIST_USERS for r in self.requests)
            lines = [
                f"Cognito: {len(self.requests)} lookup{'s' if len(self.requests) > 1 else ''}, "
                + (f"page size {PAGE_SIZE}, " if paged else "")
                + about
                + (
                    f", {min(self.workers, len(self.requests))} at a time, rows de-duplicated "
                    "by username"
                    if len(self.requests) > 1
                    else ""
                )
            ]
            lines.extend(f"Cognito: {request.describe()}" for request in self.requests)
        else:
            page = PAGE_SIZE if self.limit is None else max(1, min(PAGE_SIZE, self.limit))
            limited = f", at most {self.limit} users" if self.limit is not None else ""
            lines = [f"Cognito: {self.requests[0].describe()}, page size {page}{limited}, {about}"]
        if any(r.operation == ADMIN_GET_USER for r in self.requests):
            lines.append(f"Cognito: billed: {BILLED}")
        lines.extend(condition_lines(self.pushed, self.refused))
        if self.collations:
            lines.append(
                "Cognito: nondeterministic collations in this database: "
                + shown_names(self.collations)
            )
        return lines


# Collations are any role's to create (CREATE on a schema), and EXPLAIN shows their names to
# every role: so at most this many, each on one line (a newline in a name would let it
# pose as another line of the plan).
SHOWN_COLLATIONS = 10


def shown_names(names: Sequence[str]) -> str:
    """``names`` for an EXPLAIN line: at most :data:`SHOWN_COLLATIONS`, then how many
    more; characters that are not printable written as Python escapes (``\\n``)."""
    shown = [
        "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
        for name in names[:SHOWN_COLLATIONS]
    ]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def planner_size(plan: Plan) -> tuple[int, int]:
    """``get_rel_size``'s (rows, width) for a plan: the rows as estimated, the width chosen
    so that their product, which Multicorn takes as the path's total cost, is the plan's
    requests times :data:`REQUEST_COST` (at least one unit a row).

    Bytes do not decide what a scan costs, requests do: a 200-user pool read in 4 pages
    costs 2,000, not 216,200 (which made PostgreSQL JIT-compile a 4-request query).  A
    parameterized (join) path costs its rows times the same width, so one lookup costs
    what a row of the full scan costs: a nested loop of lookups is chosen over a scan for
    fewer outer rows than the pool has users.  A plan that sends nothing costs one a row.
    """
    rows = max(1, plan.estimated_rows)
    return rows, max(1, math.ceil(plan.estimated_requests * REQUEST_COST / rows))
