"""``object 'groups'``: one row per group of the pool.

``WHERE group_name = g`` (or ``IN (...)``) is one GetGroup per name; a qual no row can
satisfy (a comparison with NULL, ``= ANY`` of an empty array, only names Cognito could not
hold; :func:`nulls.cannot_match`) sends nothing; anything else pages through ListGroups.
PostgreSQL re-checks every qual.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .. import plans
from ..api import PAGE_SIZE
from ..aws.client import Pool, Stats
from ..columns import Field
from ..errors import CognitoApiError
from ..quals import equal_values, impossible, pushable, refusals
from ..rows import record_row
from ..values import INSTANT, NUMBER, STRING
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
        if found is None or not pushable(self.fdw_columns, "group_name", self.collations):
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
        return lines + plans.condition_lines(
            condition,
            refusals(quals, condition, ["group_name"], self.fdw_columns, self.collations, "groups"),
        )

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
