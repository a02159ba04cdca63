"""``object 'groups'``: one row per group of the pool.

``WHERE group_name = g`` (or ``IN (...)``) is one GetGroup per name; a qual no row can
satisfy (a comparison with NULL, ``= ANY`` of an empty array, only names Cognito could not
hold; :func:`nulls.cannot_match`) sends nothing; anything else pages through ListGroups.
PostgreSQL re-checks every qual.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .. import budget, plans
from ..api import PAGE_SIZE
from ..aws.client import Pool, Stats
from ..columns import Field
from ..errors import CognitoApiError
from ..quals import equal_values, impossible, once, pushable, refusals
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

    def __init__(self, options, pool: Pool, fdw_columns: Mapping, progress=None):
        super().__init__(options, pool, fdw_columns, progress)
        self.columns = self.record_columns()

    def _plan(self, quals) -> plans.Plan:
        """GetGroup for each name ``group_name = g`` or ``IN (...)`` allows (BY_GROUP), no
        request when a qual cannot be true (NONE), else ListGroups (ALL)."""
        collations = once(self.collations)
        condition = impossible(quals, {"group_name"})
        if condition is not None:
            return plans.Plan(plans.NONE, (), 1, condition)
        found = equal_values(quals, "group_name")
        if found is None or not pushable(self.fdw_columns, "group_name", collations):
            found = None, None
        names, pushed = found
        refused = refusals(quals, pushed, ["group_name"], self.fdw_columns, collations, "groups")
        if names is None:
            return plans.Plan(plans.ALL, (), _GROUPS, None, refused)
        if not names:
            return plans.Plan(plans.NONE, (), 1, pushed)
        values = tuple(dict.fromkeys(names))
        return plans.Plan(plans.BY_GROUP, (), len(names), pushed, refused, values=values)

    def rel_size(self, quals, columns) -> tuple[int, int, int]:
        return self._plan(quals).estimated_rows, len(columns) * COLUMN_WIDTH, 0

    def explain(self, quals, columns, limit=None, offset=None) -> list[str]:
        plan = self._plan(quals)
        if plan.kind == plans.NONE:
            return [plans.no_request_line(plan.pushed)]
        if plan.kind == plans.ALL:
            lines = [
                f"Cognito: ListGroups, page size {PAGE_SIZE}, a request per {PAGE_SIZE} groups"
            ]
        else:
            count = len(plan.values)
            lines = [f"Cognito: GetGroup for {count} group(s), {count} request(s)"]
        return lines + plans.condition_lines(plan.pushed, plan.refused)

    def rows(self, quals, columns, stats: Stats, limit=None, offset=None) -> Iterator[dict]:
        plan = self._plan(quals)
        if plan.kind == plans.NONE:
            return
        names = plan.values if plan.kind == plans.BY_GROUP else None
        if names:
            count = len(names)
            budget.statement.check_plan(
                count, self.options.max_requests_per_statement, f"GetGroup for {count} groups"
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
        for name in names:
            yield from self.pool.remembered(stats, "GetGroup", (name,), self._group(name, stats))

    def _group(self, name: str, stats: Stats) -> Iterator[Mapping]:
        """The group ``name`` (nothing when there is no such group)."""
        try:
            yield self.pool.call("GetGroup", stats, GroupName=name)["Group"]
        except CognitoApiError as exc:
            if not exc.missing():
                raise
