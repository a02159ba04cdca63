"""group_members' pure parts: the membership key, scan planning, column checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cognito_fdw.errors import ColumnError
from cognito_fdw.members import Members, membership_key, parse_membership

from ..support.multicorn import Qual, column_definitions


class FakePool:
    options = SimpleNamespace(writable=True, deterministic_collations=False)

    def custom_attributes(self):
        return {"custom:tenant": "String"}

    def estimated_users(self):
        return 150


def members(**types):
    types = types or {"group_name": "text", "username": "text", "membership": "text"}
    return Members(FakePool(), column_definitions(**types))


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
    assert table.plan([Qual("membership", "=", key)]) == ("users", ["alice"])
    assert table.plan(both) == ("users", ["alice"])
    assert table.plan([Qual("group_name", "=", "admins")]) == ("groups", ["admins"])
    assert table.plan([Qual("group_name", ("=", True), ["a", "b"])]) == ("groups", ["a", "b"])
    assert table.plan([Qual("group_name", "~~", "a%")]) == ("all", [])
    assert table.plan([Qual("username", "<>", None)]) == ("all", [])
    assert table.plan([Qual("username", ("=", True), ["bob", None])]) == ("users", ["bob"])


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
    assert table.plan([Qual("group_name", "=", "admins"), qual]) == ("none", [condition])
    explain = table.explain([qual], ["username"])
    assert explain == [f"{NO_REQUEST} (NULL, an empty list or no name Cognito could hold): "
                       + condition]  # fmt: skip
    assert table.rel_size([qual], ["username"]) == (1, 24, 0)
    assert list(table.rows([qual], ["username"], stats=None)) == []


def test_a_null_user_column_may_be_is_null_so_every_group_is_read():
    # email IS NULL and email = NULL-parameter arrive alike: members without an email.
    table = members(group_name="text", username="text", email="text")
    assert table.plan([Qual("email", "=", None)]) == ("all", [])


def test_a_citext_name_is_not_pushed_down_nor_offered_for_joins():
    table = members(group_name="citext", username="citext", membership="text")
    assert table.plan([Qual("username", "=", "Alice")]) == ("all", [])
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
