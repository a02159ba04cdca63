from __future__ import annotations

import pytest

from cognito_fdw.quals import equal_values, impossible, pushable, qual_text, words

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
