"""groups' pure parts: a condition no group can satisfy asks nothing; column checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cognito_fdw.columns import resolve_fields
from cognito_fdw.errors import ColumnError
from cognito_fdw.tables.groups import GROUP_COLUMNS, Groups

from ..support.multicorn import Qual, column_definitions

NO_REQUEST = "Cognito: no request: the condition cannot be true"


class NoRequests:
    """A pool the table must not use: any request fails the test."""

    def __getattr__(self, name):
        pytest.fail(f"the table used the pool ({name})")


def test_groups_table_asks_nothing_for_a_null_or_empty_name():
    columns = column_definitions(group_name="text", description="text")
    table = Groups(SimpleNamespace(deterministic_collations=True), NoRequests(), columns)
    for qual in (Qual("group_name", "=", None), Qual("group_name", ("=", True), [])):
        assert table.explain([qual], [])[0].startswith(NO_REQUEST)
        assert list(table.rows([qual], [], stats=None)) == []
    explain = table.explain([Qual("description", "=", None)], [])
    assert explain[0].startswith("Cognito: ListGroups")


def test_group_columns():
    resolved = resolve_fields(
        column_definitions(group_name="text", precedence="integer"), GROUP_COLUMNS, "g"
    )
    assert [c.name for c in resolved] == ["group_name", "precedence"]
    with pytest.raises(ColumnError, match="nope: not a column of groups") as caught:
        Groups(
            SimpleNamespace(), NoRequests(), column_definitions(nope="text", precedence="boolean")
        )
    assert "precedence: type boolean cannot hold a number" in caught.value.message
    assert caught.value.hint.startswith("Columns of object 'groups': group_name, description")


@pytest.mark.parametrize(
    "qual",
    [
        # An array Multicorn read as text (docs/multicorn.md H12: the type read from the wrong
        # place).
        Qual("group_name", ("=", True), "\x01"),
        Qual("group_name", ("=", True), ""),
        Qual("group_name", ("=", True), ["admins", 7]),
        Qual("group_name", "=", 7),
        Qual("group_name", "=", b"admins"),
    ],
)
def test_a_value_of_the_wrong_shape_reads_every_group(qual):
    # docs/multicorn.md H12: dropping or trusting it would lose the group's row.
    options = SimpleNamespace(deterministic_collations=True)
    table = Groups(options, NoRequests(), column_definitions(group_name="text"))
    assert table.explain([qual], [])[0].startswith("Cognito: ListGroups")
