"""``object 'groups'``: one row per group of the pool.

``WHERE group_name = g`` (or ``IN (...)``) is one GetGroup per name; a qual no row can
satisfy (a comparison with NULL, ``= ANY`` of an empty array, only names Cognito could not
hold; :func:`nulls.cannot_match`) sends nothing; anything else pages through ListGroups.
PostgreSQL re-checks every qual.  The qual helpers below serve ``group_members`` too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from . import budget, catalog, nulls, plans, pushdown
from .api import PAGE_SIZE, is_cognito_name
from .client import Pool, Stats
from .columns import Field
from .errors import CognitoApiError
from .rows import record_row
from .table import COLUMN_WIDTH, Table
from .values import EXACT_TEXT_TYPES, INSTANT, NUMBER, STRING, type_family

# The columns of groups: each reads a field of the group record.
GROUP_COLUMNS = {
    "group_name": Field("GroupName", STRING, "GroupName"),
    "description": Field("Description", STRING, "Description"),
    "precedence": Field("Precedence", NUMBER, "Precedence (integer)", "integer"),
    "role_arn": Field("RoleArn", STRING, "RoleArn"),
    "created_at": Field("CreationDate", INSTANT, "CreationDate (timestamptz)"),
    "updated_at": Field("LastModifiedDate", INSTANT, "LastModifiedDate (timestamptz)"),
}
# Planner guess: groups in a pool.
_GROUPS = 20


def pushable(fdw_columns: Mapping, name: str, options) -> bool:
    """Whether quals on the name column ``name`` may be sent to Cognito (``options``: the
    table's parsed options)."""
    # Cognito compares names exactly; a citext column compares without case, and neither
    # may a nondeterministic collation apply (plans.REFUSALS["collation"]): pushing its
    # value would lose rows that PostgreSQL's re-check would have kept.
    definition = fdw_columns.get(name)
    return (
        definition is not None
        and type_family(definition) in EXACT_TEXT_TYPES
        and (options.deterministic_collations or not catalog.nondeterministic_collations())
    )


def impossible(quals, never_null) -> str | None:
    """The text of the first qual no row can satisfy, or None.  ``never_null`` holds the
    columns that are NULL in no row."""
    for qual in quals:
        if nulls.cannot_match(qual, qual.field_name in never_null):
            return pushdown.qual_text(qual)
    return None


def condition_lines(quals, pushed: str | None, keys: Sequence[str], table, what: str):
    """EXPLAIN's lines for a scan's conditions: ``pushed`` (the text of the one sent to
    Cognito, or None), then every other one, left to PostgreSQL with the reason.  ``keys``
    are the columns Cognito finds ``what`` (the rows) by, most selective first; ``table``
    the table (its ``fdw_columns`` and ``pool.options``)."""
    lines = [f"Cognito: pushed down: {pushed}"] if pushed else []
    for qual in quals:
        text = pushdown.qual_text(qual)
        if text == pushed:
            pushed = None  # the one sent; an identical second one is left
            continue
        if qual.field_name not in keys:
            reason = f"Cognito finds {what} by {_words(keys)} only"
        elif not pushable(table.fdw_columns, qual.field_name, table.pool.options):
            definition = table.fdw_columns.get(qual.field_name)
            if definition is not None and type_family(definition) in EXACT_TEXT_TYPES:
                reason = plans.REFUSALS["collation"]
            else:
                reason = (
                    "the column's type compares differently from Cognito's exact names: only "
                    "text and varchar are pushed (citext ignores case)"
                )
        elif equal_values([qual], qual.field_name, names=False) is None:
            reason = "Cognito has no such search: only = and IN/= ANY are pushed"
        else:
            reason = "one condition is sent to Cognito per scan, and a more selective one was"
        lines.append(f"Cognito: left to PostgreSQL: {text}: {reason}")
    return lines


def _words(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def equal_values(quals, name: str, names: bool = True) -> tuple[list, str] | None:
    """The values a qual ``name = v`` or ``name IN (...)`` allows and the qual's text, or
    None if there is no such qual.

    With ``names`` (the column holds Cognito names), values that cannot be one match
    nothing, so they are dropped here rather than sent (Cognito would refuse them).
    """
    for qual in quals:
        if qual.field_name != name:
            continue
        if qual.operator == "=" and isinstance(qual.value, str):
            values = [qual.value]
        elif qual.operator == ("=", True) and isinstance(qual.value, list):
            values = [v for v in qual.value if isinstance(v, str)]
        else:
            continue
        if names:
            values = [v for v in values if is_cognito_name(v)]
        return values, pushdown.qual_text(qual)
    return None


class Groups(Table):
    """The ``groups`` table: read-only."""

    object = "groups"
    fields = GROUP_COLUMNS
    read_only_hint = (
        "Group memberships can be written: INSERT and DELETE on a foreign table with "
        "OPTIONS (object 'group_members', writable 'true')."
    )

    def __init__(self, pool: Pool, fdw_columns: Mapping):
        super().__init__(pool, fdw_columns)
        self.columns = self.record_columns()

    def _names(self, quals) -> tuple[list | None, str | None]:
        """(the group names to get, or None for all; the text of the condition that decided
        it: the one pushed, or one that cannot be true when there is no name)."""
        condition = impossible(quals, {"group_name"})
        if condition is not None:
            return [], condition
        found = equal_values(quals, "group_name")
        if found is None or not pushable(self.fdw_columns, "group_name", self.pool.options):
            return None, None
        return found

    def rel_size(self, quals, columns) -> tuple[int, int, int]:
        names, _ = self._names(quals)
        return _GROUPS if names is None else max(1, len(names)), len(columns) * COLUMN_WIDTH, 0

    def explain(self, quals, columns, limit=None, offset=None) -> list[str]:
        names, condition = self._names(quals)
        if names == []:
            return [plans.no_request_line(condition)]
        if names is None:
            lines = [
                f"Cognito: ListGroups, page size {PAGE_SIZE}, a request per {PAGE_SIZE} groups"
            ]
        else:
            count = len(dict.fromkeys(names))
            lines = [f"Cognito: GetGroup for {count} group(s), {count} request(s)"]
        return lines + condition_lines(quals, condition, ["group_name"], self, "groups")

    def rows(self, quals, columns, stats: Stats, limit=None, offset=None) -> Iterator[dict]:
        names, _ = self._names(quals)
        if names:
            count = len(dict.fromkeys(names))
            budget.statement.check_plan(
                count, self.pool.options.max_requests_per_statement, f"GetGroup for {count} groups"
            )
        for group in self._groups(names, stats):
            stats.rows += 1
            yield record_row(group, self.columns)

    def _groups(self, names, stats) -> Iterator[Mapping]:
        if names is None:
            yield from self.pool.remembered(
                stats, "ListGroups", (), self.pool.items("ListGroups", "Groups", stats)
            )
            return
        for name in dict.fromkeys(names):
            yield from self.pool.remembered(stats, "GetGroup", (name,), self._group(name, stats))

    def _group(self, name: str, stats: Stats) -> Iterator[Mapping]:
        """The group ``name`` (nothing when there is no such group)."""
        try:
            yield self.pool.call("GetGroup", stats, GroupName=name)["Group"]
        except CognitoApiError as exc:
            if not exc.missing():
                raise
