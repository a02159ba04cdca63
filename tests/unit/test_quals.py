from __future__ import annotations

import pytest

from cognito_fdw import plans
from cognito_fdw.quals import equal_values, impossible, pushable, qual_text, refusals, words

from ..support.multicorn import Qual, column_definitions


@pytest.mark.parametrize(
    ("qual", "text"),
    [
        (Qual("email", "=", "o'neil@example.com"), "email = 'o''neil@example.com'"),
        (Qual("username", ("=", True), ["a", None]), "username = ANY ('a', NULL)"),
        (Qual("name", ("<>", False), ["a"]), "name <> ALL ('a')"),
        (Qual("email", "~~", "a%"), "email LIKE 'a%'"),
        (Qual("email", "!~~*", "a%"), "email NOT ILIKE 'a%'"),
    ],
)
def test_a_qual_reads_as_sql(qual, text):
    assert qual_text(qual) == text


def test_equal_values_drop_what_cannot_be_a_name_only_for_names():
    quals = [Qual("group_name", "~~", "a%"), Qual("group_name", ("=", True), ["a", "", None])]
    assert equal_values(quals, "group_name") == (["a"], "group_name = ANY ('a', '', NULL)")
    assert equal_values(quals, "group_name", names=False)[0] == ["a", ""]
    assert equal_values([Qual("group_name", "=", 5)], "group_name") is None  # mistyped


def test_impossible_names_the_first_qual_no_row_can_satisfy():
    quals = [Qual("email", "=", None), Qual("group_name", ("=", True), [])]
    assert impossible(quals, {"group_name"}) == "group_name = ANY ()"
    assert impossible(quals, {"email"}) == "email = NULL"


def test_a_name_column_is_pushed_when_text_and_no_collation_may_apply():
    columns = column_definitions(group_name="text", g2="citext")
    assert pushable(columns, "group_name", lambda: ())
    assert not pushable(columns, "group_name", lambda: ("ci",))
    assert not pushable(columns, "g2", lambda: ())
    assert not pushable(columns, "missing", lambda: ())
    assert words(["a", "b", "c"]) == "a, b and c"


def test_every_reason_a_name_table_gives_is_a_refusal_of_the_one_list():
    columns = column_definitions(group_name="text", username="citext", membership="text")
    quals = [
        Qual("membership", "=", "x"),  # pushed
        Qual("group_name", "~~", "a%"),
        Qual("username", "=", "bob"),
        Qual("email", "=", "a@example.com"),
        Qual("group_name", "=", "admins"),
    ]
    keys = ["membership", "username", "group_name"]
    found = refusals(quals, "membership = 'x'", keys, columns, lambda: (), "memberships")
    assert [(r.qual, r.reason) for r in found] == [
        ("group_name LIKE 'a%'", "name-operator"),
        ("username = 'bob'", "name-type"),
        ("email = 'a@example.com'", "not-a-key"),
        ("group_name = 'admins'", "name-not-chosen"),
    ]
    assert all(r.reason in plans.REFUSALS for r in found)
    assert found[2].describe() == (
        "email = 'a@example.com': Cognito finds memberships by membership, username and "
        "group_name only"
    )
    collated = refusals(quals[1:2], None, keys, columns, lambda: ("ci",), "memberships")
    assert collated[0].reason == "collation"
    # Every reason reads whole: none holds a placeholder but not-a-key's.
    for reason in plans.REFUSALS:
        assert "{" not in plans.Refusal("q", reason, "x").describe(), reason
