"""Quals into a request plan: what to ask Cognito so that no matching user is missed.

The one rule that makes this safe: PostgreSQL re-checks every qual on every row the
wrapper returns.  So a plan may fetch *more* users than the query needs (a broader
filter, a case-insensitive match, a LIKE prefix instead of the whole pattern), never
fewer.  A qual is pushed only when Cognito's match is provably at least as broad as
PostgreSQL's comparison; otherwise it is left to PostgreSQL, with its reason recorded in
:data:`plans.REFUSALS` (EXPLAIN shows them).

Cognito's ListUsers takes one ``Filter`` per request, on one attribute, ``=`` (exact) or
``^=`` (prefix).  With several pushable quals the most selective is sent: username and
sub, then email and phone_number, then the name attributes, then a LIKE prefix, then the
user status and the Enabled flag.  ``username = x`` is a ListUsers ``username = "x"``
filter by default; with option ``username_lookup 'admin_get_user'`` it is AdminGetUser (a
4x higher quota, consistent, but it counts every user it finds as a monthly active user
for billing: see :data:`plans.BILLED`).  ``IN (...)`` / ``= ANY(...)`` becomes one lookup per
distinct value, up to :data:`plans.MAX_LOOKUPS`.  A scan of a large pool with nothing pushed
reads 16 parts (``sub ^= "0"`` .. ``sub ^= "f"``, disjoint, together every user)
concurrently.

A qual no row can satisfy (a comparison with NULL, ``= ANY`` of an empty array, ``NOT IN``
a list holding NULL) makes a NONE plan: no request, no row; :mod:`nulls` says which.

Multicorn passes no collation with a qual (docs/multicorn.md H10: quals carry no collation): while
the database has a nondeterministic collation, a text comparison may be made under it, and Cognito's
exact match could miss rows PostgreSQL counts as equal, so text quals are then left to PostgreSQL
(refusal ``collation``), unless the table asserts ``deterministic_collations``.

:func:`plan_scan` is pure; the :class:`plans.Plan` it returns is what ``explain()`` shows and
``execute()`` runs.
"""

from __future__ import annotations

import dataclasses
import unicodedata
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from .api import MAX_FILTER_LENGTH, is_cognito_name
from .columns import SEARCHABLE
from .nulls import NullTests, cannot_match
from .plans import (
    ADMIN_GET_USER,
    LIST_USERS,
    LOOKUPS,
    MAX_LOOKUPS,
    NONE,
    PARTS,
    SCAN,
    Plan,
    Refusal,
    Request,
)
from .quals import condition_text, qual_text
from .values import BOOLEAN_TYPES, EXACT_TEXT_TYPES

# Option username_lookup's values: how a username is looked up.
BY_LIST_USERS, BY_ADMIN_GET_USER = "list_users", "admin_get_user"

PARTITION_MIN_USERS = 2000  # below this, 16 parts cost more requests than they save time
PARTITIONS = tuple("0123456789abcdef")  # sub is a lowercase UUID: these prefixes cover all

# What each attribute Cognito searches is (rank, users per value, path key, ...):
# columns.SEARCHABLE, read at each call.  A LIKE prefix ranks between the names and a status.
_PREFIX_RANK = 3


@dataclasses.dataclass(frozen=True)
class Target:
    """A column Cognito can search: its filter attribute, whether its type allows it, and
    whether it reads something every user has (so it is never NULL).  ``uuid`` marks a
    uuid ``sub``: its values are compared as canonical UUIDs and it is never a path key."""

    column: str
    attribute: str
    type_ok: bool
    never_null: bool = False
    uuid: bool = False


def targets(fdw_columns: Mapping, resolved: Iterable) -> dict[str, Target]:
    """The searchable columns, by column name.

    ``fdw_columns`` is Multicorn's name -> ColumnDefinition; ``resolved`` the registry's
    columns (what each one reads).  A domain arrives with its own name as base type, so
    it is never taken for text.
    """
    found = {}
    for column in resolved:
        if column.field is not None:
            fields = {s.field: name for name, s in SEARCHABLE.items() if s.field}
            attribute = fields.get(column.field)
        else:
            search = SEARCHABLE.get(column.attribute)
            attribute = column.attribute if search and search.field is None else None
        if attribute is None:
            continue
        definition = fdw_columns[column.name]
        base = (definition.base_type_name or definition.type_name or "").lower()
        # Cognito's subs are canonical lowercase UUIDs, so uuid equality on sub is exact.
        is_uuid = attribute == "sub" and base == "uuid"
        allowed = BOOLEAN_TYPES if attribute == "status" else EXACT_TEXT_TYPES
        never_null = SEARCHABLE[attribute].never_null
        found[column.name] = Target(
            column.name, attribute, base in allowed or is_uuid, never_null, is_uuid
        )
    return found


def path_keys(
    found: Mapping[str, Target], collations: Sequence[str] = ()
) -> list[tuple[tuple[str], int]]:
    """Columns whose join values become lookups: text/varchar username, sub and email only,
    and none while ``collations`` (the nondeterministic collations a comparison may use)
    is not empty: each lookup would be a refused qual, a scan of the pool per outer row.

    EXPLAIN of a parameterized scan on a by-reference non-text type (uuid is one) crashes the
    backend in Multicorn's C code before any Python runs (docs/multicorn.md H1: EXPLAIN of a
    by-reference parameter crashes), so a uuid sub is pushed for constants only, never offered as a
    path key.
    """
    return [
        ((t.column,), SEARCHABLE[t.attribute].per_value)
        for t in found.values()
        if t.type_ok and not t.uuid and SEARCHABLE[t.attribute].path_key and not collations
    ]


@dataclasses.dataclass(frozen=True)
class _Candidate:
    key: tuple
    requests: tuple[Request, ...]
    rows: int  # estimated users: this many, or this many pool shares when share is set
    qual: str
    lookups: bool
    share: int | None = None  # the rows are users * rows // share
    text: bool = True  # a text comparison, whose exactness depends on its collation


def plan_scan(
    quals: Sequence,
    found: Mapping[str, Target],
    *,
    estimated_users: int | Callable[[], int],
    pushdown: bool = True,
    limit: int | None = None,
    offset: int | None = None,
    workers: int = 1,
    username_lookup: str = BY_LIST_USERS,
    collations: Sequence[str] | Callable[[], Sequence[str]] = (),
    null_tests: NullTests | None = None,
    stable: Collection[str] = (),
    first_scan: bool = False,
) -> Plan:
    """The request plan for a scan with these quals (Multicorn ``Qual`` objects).

    ``estimated_users`` (the pool's size) may be a function: it is only called when the
    plan depends on it, so a lookup costs no DescribeUserPool request.  A qual no row can
    satisfy makes a NONE plan (no request); with ``pushdown`` off nothing is decided from
    the quals and the whole pool is read.  ``username_lookup`` is BY_LIST_USERS (a ListUsers
    filter per username: not billed) or BY_ADMIN_GET_USER (AdminGetUser: billed).
    ``collations``: the nondeterministic collations a comparison may be made under (or a
    function giving them, called only when a text qual could be pushed); while there is
    one, text quals are refused.  ``null_tests``: the backend's planned IS NULL tests,
    which prove a ``('=', None)`` on any other column a NULL key (None: nothing proven).
    ``stable``: the texts of the quals that held the same value at the previous scan of this
    statement (a rescan: a join's inner side); a lookup by one of them is preferred, as
    its answer is cached after the first scan (a generic plan's ``email = $1`` beside a
    join's ``sub`` key: one request in all, not one per outer row).  ``first_scan``: this is
    the statement's first scan of the table, when nothing is known to be stable yet; an
    equality on a path key that follows another lookup may then be a join's key (see
    _join_key_last), so the earlier lookup is preferred.
    """

    known: list[int] = []
    in_doubt: list[tuple[str, ...]] = []

    def users() -> int:
        if not known:
            count = estimated_users() if callable(estimated_users) else estimated_users
            known.append(max(1, count))
        return known[0]

    def nondeterministic() -> tuple[str, ...]:
        if not in_doubt:
            in_doubt.append(tuple(collations() if callable(collations) else collations))
        return in_doubt[0]

    wanted = None if limit is None else (offset or 0) + limit
    if not pushdown:
        refused = tuple(Refusal(qual_text(q), "off") for q in quals)
        return _full_scan(users, None, 0, workers, refused)
    for qual in quals:
        target = found.get(qual.field_name)
        never_null = target is not None and target.never_null
        null_test = null_tests is None or null_tests.may_be_null_test(qual.field_name)
        if cannot_match(qual, never_null, null_test):
            return Plan(NONE, (), 1, qual_text(qual))
    candidates, refused, later = [], [], set()
    for qual in quals:
        outcome = _candidate(qual, found, username_lookup == BY_ADMIN_GET_USER)
        if isinstance(outcome, _Candidate) and outcome.text and nondeterministic():
            outcome = "collation"
        if isinstance(outcome, _Candidate):
            if first_scan and _join_key_last(qual, found, candidates):
                later.add(outcome.qual)
            candidates.append(outcome)
        else:
            refused.append(Refusal(qual_text(qual), outcome))
    doubt = nondeterministic() if any(r.reason == "collation" for r in refused) else ()
    if not candidates:
        plan = _full_scan(users, wanted, offset or 0, workers, tuple(refused))
        return dataclasses.replace(plan, collations=doubt)
    best = min(
        candidates, key=lambda c: (not (c.lookups and c.qual in stable), c.qual in later, c.key)
    )
    refused.extend(Refusal(c.qual, "not-chosen") for c in candidates if c is not best)
    rows = max(
        1, best.rows if best.share is None else min(users(), users() * best.rows // best.share)
    )
    if best.lookups and not best.requests:  # every value is one no user can have
        return Plan(NONE, (), 1, best.qual)
    if best.lookups:
        return Plan(
            LOOKUPS, best.requests, rows, best.qual, tuple(refused), workers=workers,
            collations=doubt,
        )  # fmt: skip
    return Plan(SCAN, best.requests, rows, best.qual, tuple(refused), wanted, collations=doubt)


def _join_key_last(qual, found: Mapping[str, Target], before: Sequence[_Candidate]) -> bool:
    """Whether this qual may be a parameterized scan's join key, with a lookup before it.

    PostgreSQL hands a parameterized scan its table's own conditions first and the join's
    conditions after them (create_scan_plan appends the path's ``ppi_clauses`` to
    ``baserestrictinfo``), and Multicorn keeps that order.  A join key is an equality on a
    column path_keys offered; its value changes with every outer row, while the conditions
    before it (a constant, a generic plan's ``$1``) hold for the whole statement.
    """
    target = found.get(qual.field_name)
    return (
        qual.operator == "="
        and target is not None
        and (((target.column,), SEARCHABLE[target.attribute].per_value) in path_keys(found))
        and any(c.lookups for c in before)
    )


# The username column of a users table, as group_members looks a member up.
_USERNAME = Target("username", "username", True, never_null=True)


def username_plan(
    username: str,
    *,
    estimated_users: int | Callable[[], int],
    username_lookup: str = BY_LIST_USERS,
) -> Plan:
    """The plan of ``username = 'x'`` on a users table, as :func:`plan_scan` makes it: one
    ListUsers filter, or AdminGetUser under ``username_lookup`` BY_ADMIN_GET_USER (billed);
    a name no filter can carry exactly reads the pool, one no user can have asks nothing.
    group_members reads a member's user columns with it."""
    text = condition_text("username", "=", username)
    outcome = _in_candidate(text, _USERNAME, [username], username_lookup == BY_ADMIN_GET_USER)
    if isinstance(outcome, str):

        def users() -> int:
            return max(1, estimated_users() if callable(estimated_users) else estimated_users)

        return _full_scan(users, None, 0, 1, (Refusal(text, outcome),))
    if not outcome.requests:
        return Plan(NONE, (), 1, text)
    return Plan(LOOKUPS, outcome.requests, max(1, outcome.rows), text)


def _full_scan(users: Callable[[], int], wanted, offset, workers, refused) -> Plan:
    if wanted is not None:  # a pushed LIMIT: the pool's size does not matter
        requests = () if wanted == 0 else (Request(LIST_USERS),)
        return Plan(SCAN, requests, max(1, wanted - offset), None, refused, wanted)
    count = users()
    if workers > 1 and count >= PARTITION_MIN_USERS:
        parts = tuple(Request(LIST_USERS, filter=f'sub ^= "{p}"') for p in PARTITIONS)
        return Plan(PARTS, parts, count, None, refused, workers=workers)
    return Plan(SCAN, (Request(LIST_USERS),), count, None, refused, None)


def _candidate(qual, found: Mapping[str, Target], admin_get_user: bool):
    """A _Candidate for this qual, or the REFUSALS key saying why not."""
    target = found.get(qual.field_name)
    if target is None:
        return "column"
    if not target.type_ok:
        return "type"
    operator, value = qual.operator, qual.value
    if isinstance(operator, (tuple, list)):
        if tuple(operator) != ("=", True) or target.attribute == "status":
            return "operator"
        if not isinstance(value, (list, tuple)):
            return "mistyped"
        return _in_candidate(qual_text(qual), target, value, admin_get_user)
    if value is None:
        return "null"
    if target.attribute == "status":
        return _enabled_candidate(qual, operator, value)
    if operator == "=":
        return _in_candidate(qual_text(qual), target, [value], admin_get_user)
    if operator == "~~" and SEARCHABLE[target.attribute].like:
        return _prefix_candidate(qual, target, value)
    return "operator"


def _in_candidate(text: str, target: Target, values, admin_get_user: bool):
    """A lookup _Candidate for the qual of text ``text`` allowing ``values``, or the
    REFUSALS key saying why not."""
    if not all(v is None or isinstance(v, str) for v in values):
        # A text column's values arrive as str (docs/multicorn.md H12: other types are mistyped).
        return "value"
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    if target.attribute == "username" and target.never_null:
        # Every user's name is 1 to 128 letters, marks, symbols, numbers or punctuation
        # and text equality is exact: no user has any other value.
        distinct = [v for v in distinct if not isinstance(v, str) or is_cognito_name(v)]
    if len(distinct) > MAX_LOOKUPS:
        return "in-bound"
    requests = []
    if target.uuid:
        distinct = list(dict.fromkeys(_canonical_uuid(v) for v in distinct))
        if None in distinct:
            return "value"
    for value in distinct:
        request = _lookup(target.attribute, value, admin_get_user)
        if isinstance(request, str):
            return request
        requests.append(request)
    search = SEARCHABLE[target.attribute]
    rank, share = search.rank, search.share
    rows = len(distinct) if share else len(distinct) * search.per_value
    if not requests:
        rank = -1  # no value any user can have: no row at all, known without asking
    return _Candidate(
        (rank, len(requests)), tuple(requests), rows, text, True, share, text=not target.uuid
    )


def _canonical_uuid(value) -> str | None:
    """A uuid qual's value (Multicorn passes a str) in Cognito's form, lowercase and
    hyphenated; None for anything that is no UUID."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _lookup(attribute: str, value, admin_get_user: bool) -> Request | str:
    if not isinstance(value, str):
        return "value"
    if admin_get_user and attribute == "username" and is_cognito_name(value):
        return Request(ADMIN_GET_USER, username=value)
    return _filter_request(attribute, "=", value)


def _filter_request(attribute: str, op: str, value: str) -> Request | str:
    if value == "":
        return "empty"
    if '"' in value or "\\" in value:
        return "escape"
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return "control"
    if value != value.strip():
        return "whitespace"
    text = f'{attribute} {op} "{value}"'
    if len(text) > MAX_FILTER_LENGTH:
        return "length"
    return Request(LIST_USERS, filter=text)


def _prefix_candidate(qual, target: Target, pattern):
    if not isinstance(pattern, str):
        return "value"
    prefix = []
    for ch in pattern:
        if ch in "%_":
            break
        if ch == "\\":
            return "like-escape"
        prefix.append(ch)
    if not prefix:
        return "like-prefix"
    request = _filter_request(target.attribute, "^=", "".join(prefix))
    if isinstance(request, str):
        return request
    return _Candidate((_PREFIX_RANK, 1), (request,), 1, qual_text(qual), False, share=10)


def _enabled_candidate(qual, operator, value):
    # Multicorn passes booleans as 't'/'f'; NOT enabled arrives as enabled <> 't'.
    if not isinstance(value, (str, bool)):
        return "enabled-value"
    truth = {"t": True, "f": False, True: True, False: False}.get(value)
    if truth is None:
        return "enabled-value"
    if operator == "<>":
        truth = not truth
    elif operator not in ("=", "IS"):
        return "operator"
    request = Request(LIST_USERS, filter=f'status = "{"Enabled" if truth else "Disabled"}"')
    search = SEARCHABLE["status"]
    return _Candidate(
        (search.rank, 1), (request,), 1, qual_text(qual), False, search.share, text=False
    )
