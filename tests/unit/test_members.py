"""group_members' pure parts: the membership key, scan planning, column checks, and reading a
member's record as the users table looks a username up."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cognito_fdw import plans, pushdown
from cognito_fdw.aws.client import Stats
from cognito_fdw.errors import ColumnError
from cognito_fdw.tables.members import Members, membership_key, parse_membership

from ..support.multicorn import Qual, column_definitions
from ..support.nocache import NoCache


class FakePool(NoCache):
    options = SimpleNamespace(writable=True, deterministic_collations=False)

    def custom_attributes(self):
        return {"custom:tenant": "String"}

    def estimated_users(self):
        return 150


def members(**types):
    types = types or {"group_name": "text", "username": "text", "membership": "text"}
    return Members(FakePool.options, FakePool(), column_definitions(**types))


@given(st.text(min_size=1), st.text(min_size=1))
def test_membership_key_round_trips(group, user):
    assert parse_membership(membership_key(group, user)) == (group, user)


@pytest.mark.parametrize("value", ["", "x", "[]", '["a"]', '["a", 1]', '{"a": "b"}', None])
def test_values_that_are_not_membership_keys(value):
    assert parse_membership(value) is None


def how(plan):
    """A plan's kind and the names it reads by."""
    return plan.kind, plan.values


def test_plan_prefers_membership_then_username_then_group():
    table = members()
    key = membership_key("admins", "alice")
    both = [Qual("group_name", "=", "admins"), Qual("username", "=", "alice")]
    assert how(table.plan([Qual("membership", "=", key)])) == (plans.BY_USER, ("alice",))
    assert how(table.plan(both)) == (plans.BY_USER, ("alice",))
    assert how(table.plan([Qual("group_name", "=", "admins")])) == (plans.BY_GROUP, ("admins",))
    in_ab = [Qual("group_name", ("=", True), ["a", "b", "a"])]
    assert how(table.plan(in_ab)) == (plans.BY_GROUP, ("a", "b"))
    assert how(table.plan([Qual("group_name", "~~", "a%")])) == (plans.ALL, ())
    assert how(table.plan([Qual("username", "<>", None)])) == (plans.ALL, ())
    in_bob = [Qual("username", ("=", True), ["bob", None])]
    assert how(table.plan(in_bob)) == (plans.BY_USER, ("bob",))


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
    plan = table.plan([Qual("group_name", "=", "admins"), qual])
    assert (plan.kind, plan.values, plan.pushed) == (plans.NONE, (), condition)
    explain = table.explain([qual], ["username"])
    assert explain == [f"{NO_REQUEST} (NULL, an empty list or no name Cognito could hold): "
                       + condition]  # fmt: skip
    assert table.rel_size([qual], ["username"]) == (1, 24, 0)
    assert list(table.rows([qual], ["username"], stats=None)) == []


def test_a_null_user_column_may_be_is_null_so_every_group_is_read():
    # email IS NULL and email = NULL-parameter arrive alike: members without an email.
    table = members(group_name="text", username="text", email="text")
    assert how(table.plan([Qual("email", "=", None)])) == (plans.ALL, ())


def test_a_citext_name_is_not_pushed_down_nor_offered_for_joins():
    table = members(group_name="citext", username="citext", membership="text")
    assert how(table.plan([Qual("username", "=", "Alice")])) == (plans.ALL, ())
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


class CaseBlindPool(NoCache):
    """ListUsers of a pool whose usernames ignore case, as Cognito can be configured."""

    def __init__(self, *names, username_lookup=pushdown.BY_LIST_USERS):
        self.users = [{"Username": name, "Attributes": []} for name in names]
        self.options = SimpleNamespace(
            writable=False, username_lookup=username_lookup, deterministic_collations=False
        )
        self.filters = []

    def custom_attributes(self):
        return {}

    def estimated_users(self):
        return len(self.users)

    def list_user_pages(self, stats, filter=None, limit=None):
        self.filters.append(filter)
        wanted = filter.split(" = ", 1)[1].strip('"').casefold()
        yield [u for u in self.users if u["Username"].casefold() == wanted]


def record(pool, username):
    columns = column_definitions(group_name="text", username="text", email="text")
    table = Members(pool.options, pool, columns)
    return table._user_record(username, Stats())


@pytest.mark.parametrize(
    "names, asked, found",
    [
        (["alice"], "alice", "alice"),
        (["Alice", "alice"], "alice", "alice"),  # the exact spelling wins
        (["Alice"], "alice", "Alice"),  # the one user Cognito matched, another spelling
        (["Alice", "ALICE"], "alice", None),  # two spellings: which one is not known
        (["bob"], "alice", None),
    ],
)
def test_the_record_is_the_users_exact_or_only_match(names, asked, found):
    pool = CaseBlindPool(*names)
    got = record(pool, asked)
    assert (got and got["Username"]) == found
    assert pool.filters == [f'username = "{asked}"']  # one ListUsers filter, not AdminGetUser


def test_the_lookup_follows_username_lookup():
    columns = column_definitions(group_name="text", username="text", email="text")
    pool = CaseBlindPool(username_lookup=pushdown.BY_ADMIN_GET_USER)
    billed = Members(pool.options, pool, columns)._lookup("alice")
    assert [r.operation for r in billed.requests] == [plans.ADMIN_GET_USER]
    pool = CaseBlindPool()
    default = Members(pool.options, pool, columns)._lookup("alice")
    assert [r.describe() for r in default.requests] == ['ListUsers Filter: username = "alice"']


def test_explain_says_what_is_pushed_and_why_the_rest_is_left():
    pool = CaseBlindPool()
    columns = column_definitions(group_name="citext", username="text", email="text")
    table = Members(pool.options, pool, columns)
    lines = table.explain(
        [
            Qual("group_name", "=", "admins"),
            Qual("username", ("=", True), ["a", "b"]),
            Qual("username", "~~", "a%"),
            Qual("email", "=", "a@x"),
        ],
        ["group_name"],
    )
    assert lines == [
        "Cognito: AdminListGroupsForUser for 2 user(s), page size 60, a request per 60 groups "
        "of each",
        "Cognito: pushed down: username = ANY ('a', 'b')",
        "Cognito: left to PostgreSQL: group_name = 'admins': the column's type compares "
        "differently from Cognito's exact names: only text and varchar are pushed (citext "
        "ignores case)",
        "Cognito: left to PostgreSQL: username LIKE 'a%': Cognito has no such search: only = "
        "and IN/= ANY are pushed",
        "Cognito: left to PostgreSQL: email = 'a@x': Cognito finds memberships by username "
        "and group_name only",
    ]


@pytest.mark.parametrize("column", ["group_name", "username", "membership"])
@pytest.mark.parametrize("value", ["\x01", "", 7, ["admins", 7], b"x"])
def test_a_value_of_the_wrong_shape_reads_every_membership(column, value):
    # docs/multicorn.md H12: an IN list Multicorn converted with a wrong type.
    operator = "=" if isinstance(value, (int, bytes)) else ("=", True)
    FakePool.options.deterministic_collations = True
    try:
        assert how(members().plan([Qual(column, operator, value)])) == (plans.ALL, ())
    finally:
        FakePool.options.deterministic_collations = False
