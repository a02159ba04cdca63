"""group_members reads a member's record as the users table looks a username up."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cognito_fdw import pushdown
from cognito_fdw.client import Stats
from cognito_fdw.members import Members
from cognito_fdw.users import username_lookup

from .test_groups import Qual, cols


class CaseBlindPool:
    """ListUsers of a pool whose usernames ignore case, as Cognito can be configured."""

    def __init__(self, *names, username_lookup=pushdown.BY_LIST_USERS):
        self.users = [{"Username": name, "Attributes": []} for name in names]
        self.options = SimpleNamespace(writable=False, username_lookup=username_lookup)
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
    table = Members(pool, cols(group_name="text", username="text", email="text"))
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
    lookup = username_lookup(CaseBlindPool(username_lookup=pushdown.BY_ADMIN_GET_USER), "alice")
    assert [r.operation for r in lookup.requests] == [pushdown.ADMIN_GET_USER]
    default = username_lookup(CaseBlindPool(), "alice")
    assert [r.describe() for r in default.requests] == ['ListUsers Filter: username = "alice"']


def test_explain_says_what_is_pushed_and_why_the_rest_is_left():
    table = Members(CaseBlindPool(), cols(group_name="citext", username="text", email="text"))
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
