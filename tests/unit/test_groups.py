"""group_members' pure parts: the membership key, scan planning, column checks; import."""

from __future__ import annotations

import collections
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cognito_fdw.columns import resolve_fields
from cognito_fdw.errors import ColumnError, OptionError
from cognito_fdw.groups import GROUP_COLUMNS, Groups
from cognito_fdw.importer import column_name, table_definitions
from cognito_fdw.members import Members, membership_key, parse_membership

Col = collections.namedtuple("Col", "column_name type_name base_type_name options")
Qual = collections.namedtuple("Qual", "field_name operator value")


def cols(**types):
    return {name: Col(name, t, t, {}) for name, t in types.items()}


class FakePool:
    options = SimpleNamespace(writable=True)

    def custom_attributes(self):
        return {"custom:tenant": "String"}

    def estimated_users(self):
        return 150


def members(**types):
    types = types or {"group_name": "text", "username": "text", "membership": "text"}
    return Members(FakePool(), cols(**types))


@given(st.text(min_size=1), st.text(min_size=1))
def test_membership_key_round_trips(group, user):
    assert parse_membership(membership_key(group, user)) == (group, user)


@pytest.mark.parametrize("value", ["", "x", "[]", '["a"]', '["a", 1]', '{"a": "b"}', None])
def test_values_that_are_not_membership_keys(value):
    assert parse_membership(value) is None


def test_plan_prefers_membership_then_username_then_group():
    table = members()
    key = membership_key("admins", "alice")
    both = [Qual("group_name", "=", "admins"), Qual("username", "=", "alice")]
    assert table.plan([Qual("membership", "=", key)])[:2] == ("users", ["alice"])
    assert table.plan(both)[:2] == ("users", ["alice"])
    assert table.plan([Qual("group_name", "=", "admins")])[:2] == ("groups", ["admins"])
    assert table.plan([Qual("group_name", ("=", True), ["a", "b"])])[:2] == ("groups", ["a", "b"])
    assert table.plan([Qual("group_name", "~~", "a%")])[:2] == ("all", [])
    assert table.plan([Qual("username", "<>", None)])[:2] == ("all", [])
    assert table.plan([Qual("username", ("=", True), ["bob", None])])[:2] == ("users", ["bob"])


NO_REQUEST = "Cognito: no request: the condition cannot be true"


@pytest.mark.parametrize(
    "qual, condition",
    [(Qual("username", "=", None), "username = NULL"),
     (Qual("group_name", "=", None), "group_name = NULL"),
     (Qual("username", ("=", True), None), "username = ANY NULL"),
     (Qual("group_name", ("=", True), [None]), "group_name = ANY (NULL)"),
     (Qual("email", ("=", True), []), "email = ANY ()"),
     (Qual("email", "~~", None), "email LIKE NULL"),
     (Qual("username", ("<>", False), ["a", None]), "username <> ALL ('a', NULL)"),
     (Qual("membership", "=", "garbage"), "membership = 'garbage'"),
     (Qual("username", ("=", True), ["a b", None, ""]), "username = ANY ('a b', NULL, '')")],
)  # fmt: skip
def test_a_qual_no_membership_can_satisfy_asks_nothing(qual, condition):
    table = members(group_name="text", username="text", membership="text", email="text")
    assert table.plan([Qual("group_name", "=", "admins"), qual]) == ("none", [], condition)
    explain = table.explain([qual], ["username"])
    assert explain == [f"{NO_REQUEST} (NULL, an empty list or no name Cognito could hold): "
                       + condition]  # fmt: skip
    assert table.rel_size([qual], ["username"]) == (1, 24, 0)
    assert list(table.rows([qual], ["username"], stats=None)) == []


def test_a_null_user_column_may_be_is_null_so_every_group_is_read():
    # email IS NULL and email = NULL-parameter arrive alike: members without an email.
    table = members(group_name="text", username="text", email="text")
    assert table.plan([Qual("email", "=", None)])[:2] == ("all", [])


def test_groups_table_asks_nothing_for_a_null_or_empty_name():
    table = Groups(FakePool(), cols(group_name="text", description="text"))
    for qual in (Qual("group_name", "=", None), Qual("group_name", ("=", True), [])):
        assert table.explain([qual], [])[0].startswith(NO_REQUEST)
        assert list(table.rows([qual], [], stats=None)) == []
    explain = table.explain([Qual("description", "=", None)], [])
    assert explain[0].startswith("Cognito: ListGroups")


def test_a_citext_name_is_not_pushed_down_nor_offered_for_joins():
    table = members(group_name="citext", username="citext", membership="text")
    assert table.plan([Qual("username", "=", "Alice")])[:2] == ("all", [])
    assert table.path_keys() == [(("membership",), 1)]
    assert [k for k, _ in members().path_keys()] == [
        ("membership",),
        ("username",),
        ("group_name",),
    ]


def test_member_columns_resolve_user_columns_and_refuse_bad_types():
    table = members(group_name="text", username="text", email="text", tenant="text")
    assert [c.name for c in table.user_columns] == ["username", "email", "tenant"]
    assert not table.has_rowid
    with pytest.raises(ColumnError, match="group_name: type integer"):
        members(group_name="integer", username="text")


def test_group_columns():
    resolved = resolve_fields(cols(group_name="text", precedence="integer"), GROUP_COLUMNS, "g")
    assert [c.name for c in resolved] == ["group_name", "precedence"]
    with pytest.raises(ColumnError, match="nope: not a column of groups") as caught:
        Groups(FakePool(), cols(nope="text", precedence="boolean"))
    assert "precedence: type boolean cannot hold a number" in caught.value.message
    assert caught.value.hint.startswith("Columns of object 'groups': group_name, description")


@pytest.mark.parametrize(
    "attribute, expected",
    [
        ("custom:tenant", "tenant"),
        ("custom:TenantId", "tenant_id"),
        ("custom:order", "custom_order"),
        ("custom:email", "custom_email"),
        ("custom:2fa", "custom_2fa"),
        ("dev:custom:x-y z", "x_y_z"),
    ],
)
def test_imported_column_names_need_no_quoting(attribute, expected):
    assert column_name(attribute, {"email", "username"}) == expected


def test_import_definitions():
    tables = table_definitions(
        {"custom:tenant": "String", "custom:age": "Number", "custom:beta": "Boolean"},
        {"writable": "true"},
    )
    assert [t.name for t in tables] == ["users", "groups", "group_members", "user_pool"]
    users = {c.name: c for c in tables[0].columns}
    assert users["age"].type_name == "numeric"
    assert users["age"].options == {"attribute": "custom:age"}
    assert users["beta"].type_name == "boolean"
    assert users["sub"].type_name == "text"  # a join key: see importer._standard_type
    assert users["updated_at"].type_name == "timestamp with time zone"
    assert tables[2].options == {"object": "group_members", "writable": "true"}
    assert tables[3].options == {"object": "user_pool"}  # read-only: no writable
    pool = {c.name: c.type_name for c in tables[3].columns}
    assert pool["estimated_users"] == "integer" and pool["schema_attributes"] == "jsonb"
    for table in tables:  # keys are emitted unquoted by Multicorn: keep them lower case
        for key in [*table.options, *(k for c in table.columns for k in c.options)]:
            assert key.isidentifier() and key == key.lower()
    with pytest.raises(OptionError, match="unknown IMPORT FOREIGN SCHEMA option: prefix"):
        table_definitions({}, {"prefix": "x"})
    with pytest.raises(OptionError, match="invalid value for option writable"):
        table_definitions({}, {"writable": "yes"})
