"""``object 'groups'``: one row per group of the pool.

``WHERE group_name = g`` (or ``IN (...)``) is one GetGroup per name; a qual no row can
satisfy (a comparison with NULL, ``= ANY`` of an empty array, only names Cognito could not
hold; :func:`pushdown.cannot_match`) sends nothing; anything else pages through ListGroups.
PostgreSQL re-checks every qual.  The qual helpers below serve ``group_members`` too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from . import backend, pushdown
from .api import PAGE_SIZE, is_cognito_name
from .client import Pool, Stats
from .columns import EXACT_TEXT_TYPES, INSTANT, NUMBER, STRING, Field, type_family
from .errors import CognitoApiError
from .rows import record_row
from .table import COLUMN_WIDTH, Table

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
    # may a nondeterministic collation apply (pushdown.REFUSALS["collation"]): pushing its
    # value would lose rows that PostgreSQL's re-check would have kept.
    definition = fdw_columns.get(name)
    return (
        definition is not None
        and type_family(definition) in EXACT_TEXT_TYPES
        and (options.deterministic_collations or not backend.nondeterministic_collations())
    )


def impossible(quals, never_null) -> str | None:
    """The text of the first qual no row can satisfy, or None.  ``never_null`` holds the
    columns that are NULL in no row."""
    for qual in quals:
        if pushdown.cannot_match(qual, qual.field_name in never_null):
            return pushdown.qual_text(qual)
    return None


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
        """(the group names to get, or None for all; the condition that cannot be true)."""
        condition = impossible(quals, {"group_name"})
        if condition is not None:
            return [], condition
        found = equal_values(quals, "group_name")
        if found is None or not pushable(self.fdw_columns, "group_name", self.pool.options):
            return None, None
        return found[0], None if found[0] else found[1]

    def rel_size(self, quals, columns) -> tuple[int, int, int]:
        names, _ = self._names(quals)
        return _GROUPS if names is None else max(1, len(names)), len(columns) * COLUMN_WIDTH, 0

    def explain(self, quals, columns, limit=None, offset=None, verbose=False) -> list[str]:
        names, condition = self._names(quals)
        if condition is not None:
            lines = [pushdown.no_request_line(condition)]
        elif names is None:
            lines = [f"Cognito: ListGroups, page size {PAGE_SIZE}, all pages"]
        else:
            lines = [f"Cognito: GetGroup for {len(names)} group(s)"]
        return [*lines, self.where()] if verbose else lines

    def rows(self, quals, columns, stats: Stats, limit=None, offset=None) -> Iterator[dict]:
        names, _ = self._names(quals)
        for group in self._groups(names, stats):
            stats.rows += 1
            yield record_row(group, self.columns)

    def _groups(self, names, stats) -> Iterator[Mapping]:
        if names is None:
            yield from self.pool.items("ListGroups", "Groups", stats)
            return
        for name in dict.fromkeys(names):
            try:
                yield self.pool.call("GetGroup", stats, GroupName=name)["Group"]
            except CognitoApiError as exc:
                if not exc.missing():
                    raise
