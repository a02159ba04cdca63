"""Pushdown planning: which quals become which Cognito requests, and every refusal."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cognito_fdw import columns as registry
from cognito_fdw import nulls, plans, pushdown
from cognito_fdw.columns import Searchable, resolve_columns
from cognito_fdw.plans import ADMIN_GET_USER, LIST_USERS, LOOKUPS, NONE, PARTS, SCAN, Request
from cognito_fdw.quals import qual_text

from ..support.multicorn import Qual, column_definitions

COLUMNS = column_definitions(
    username="text",
    sub="text",
    email="character varying(200)",
    phone_number="text",
    given_name="text",
    family_name="text",
    name="text",
    preferred_username="text",
    status="text",
    enabled="boolean",
    nickname="text",
    mail=("text", {"attribute": "email"}),
    tenant=("text", {"attribute": "custom:tenant"}),
)


def targets(columns=COLUMNS):
    resolved = resolve_columns(columns, lambda: {"custom:tenant": "String"})
    return pushdown.targets(columns, resolved)


def plan(*quals, columns=COLUMNS, users=10_000, **kwargs):
    return pushdown.plan_scan(quals, targets(columns), estimated_users=users, **kwargs)


def reasons(p):
    return [r.reason for r in p.refused]


def test_username_equality_is_one_list_users_filter_by_default_which_is_not_billed():
    p = plan(Qual("username", "=", "alice"))
    assert p.kind == LOOKUPS
    assert p.requests == (Request(LIST_USERS, filter='username = "alice"'),)
    assert p.estimated_rows == 1 and p.estimated_requests == 1
    assert not any("billed" in line for line in p.explain())


def test_username_lookup_admin_get_user_is_one_billed_admin_get_user():
    p = plan(Qual("username", "=", "alice"), username_lookup=pushdown.BY_ADMIN_GET_USER)
    assert p.kind == LOOKUPS
    assert p.requests == (Request(ADMIN_GET_USER, username="alice"),)
    assert p.estimated_rows == 1 and p.estimated_requests == 1
    assert f"Cognito: billed: {plans.BILLED}" in p.explain()
    assert "monthly active user" in plans.BILLED


@pytest.mark.parametrize("lookup", [pushdown.BY_LIST_USERS, pushdown.BY_ADMIN_GET_USER])
def test_username_in_list_and_join_keys_use_the_chosen_operation(lookup):
    operation = {pushdown.BY_LIST_USERS: LIST_USERS}.get(lookup, ADMIN_GET_USER)
    p = plan(Qual("username", ("=", True), ["a", "b", "a"]), username_lookup=lookup)
    assert p.kind == LOOKUPS and [r.operation for r in p.requests] == [operation] * 2
    # Other attributes are ListUsers filters either way: only usernames can be got.
    p = plan(Qual("email", "=", "a@x"), username_lookup=lookup)
    assert p.requests == (Request(LIST_USERS, filter='email = "a@x"'),)


@pytest.mark.parametrize(
    "column, attribute",
    [("sub", "sub"), ("email", "email"), ("phone_number", "phone_number"),
     ("given_name", "given_name"), ("family_name", "family_name"), ("name", "name"),
     ("preferred_username", "preferred_username"), ("mail", "email"),
     ("status", "cognito:user_status")],
)  # fmt: skip
def test_equality_becomes_an_exact_filter(column, attribute):
    p = plan(Qual(column, "=", "x@y.org"))
    assert p.requests == (Request(LIST_USERS, filter=f'{attribute} = "x@y.org"'),)


def test_a_quoted_username_is_refused_as_a_filter_but_admin_get_user_needs_no_escaping():
    p = plan(Qual("username", "=", 'o"brien\\'))
    assert p.kind == SCAN and reasons(p) == ["escape"]
    p = plan(Qual("username", "=", 'o"brien\\'), username_lookup=pushdown.BY_ADMIN_GET_USER)
    assert p.requests == (Request(ADMIN_GET_USER, username='o"brien\\'),)


def test_a_username_no_user_can_have_asks_nothing():
    # User names are 1 to 128 letters, marks, symbols, numbers or punctuation.
    for value in ("a b", "a\nb", "", "x" * 129):
        p = plan(Qual("username", "=", value))
        assert p.kind == NONE and p.requests == () and p.estimated_requests == 0
    p = plan(Qual("username", ("=", True), ["a b", None, "alice"]))
    assert p.requests == (Request(LIST_USERS, filter='username = "alice"'),)


@pytest.mark.parametrize(
    "value, reason",
    [("", "empty"), ('a"b', "escape"), ("a\\b", "escape"), ("a\tb", "control"),
     (" a", "whitespace"), ("a ", "whitespace"), ("x" * 250, "length"), (None, "null"),
     (5, "value")],
)  # fmt: skip
def test_values_the_filter_grammar_cannot_carry_exactly_are_refused(value, reason):
    p = plan(Qual("email", "=", value))
    assert p.kind == SCAN and p.requests == (Request(LIST_USERS),)
    assert reasons(p) == [reason]


def test_unicode_percent_and_underscore_are_carried_as_they_are():
    p = plan(Qual("email", "=", "zoë_100%@例え.jp"))
    assert p.requests[0].filter == 'email = "zoë_100%@例え.jp"'


@pytest.mark.parametrize(
    "pattern, expected",
    [("abc%", 'email ^= "abc"'), ("ab_d%", 'email ^= "ab"'), ("abc", 'email ^= "abc"'),
     ("a%b_c", 'email ^= "a"')],
)  # fmt: skip
def test_like_pushes_the_literal_prefix_before_the_first_wildcard(pattern, expected):
    p = plan(Qual("email", "~~", pattern))
    assert p.kind == SCAN and p.requests == (Request(LIST_USERS, filter=expected),)


@pytest.mark.parametrize(
    "pattern, reason",
    [("%abc", "like-prefix"), ("_bc%", "like-prefix"), ("a\\%b%", "like-escape"),
     ('a"%', "escape")],
)  # fmt: skip
def test_like_without_a_plain_prefix_is_refused(pattern, reason):
    assert reasons(plan(Qual("email", "~~", pattern))) == [reason]


@pytest.mark.parametrize("operator", ["~~*", "!~~", "<>", "<", ">=", "~", ("<>", False)])
def test_operators_cognito_cannot_search_are_refused(operator):
    assert reasons(plan(Qual("email", operator, "a"))) == ["operator"]


def test_like_on_status_is_refused():
    assert reasons(plan(Qual("status", "~~", "CONF%"))) == ["operator"]


@pytest.mark.parametrize(
    "column, column_type",
    [("email", "citext"), ("email", "email_domain"), ("email", "character(20)"),
     ("email", "name")],
)  # fmt: skip
def test_columns_whose_equality_differs_from_cognitos_are_never_pushed(column, column_type):
    columns = column_definitions(**{column: column_type})
    assert reasons(plan(Qual(column, "=", "a@b.c"), columns=columns)) == ["type"]


UUID_COLUMNS = column_definitions(username="text", sub="uuid")
SUB = "974f9d96-e461-42ed-8931-27d12aa981f3"


@pytest.mark.parametrize(
    "value", [SUB, SUB.upper(), "{" + SUB + "}", SUB.replace("-", "")]
)  # fmt: skip
def test_uuid_sub_equality_is_pushed_in_cognitos_canonical_form(value):
    p = plan(Qual("sub", "=", value), columns=UUID_COLUMNS)
    assert p.kind == LOOKUPS and not p.refused
    assert p.requests == (Request(LIST_USERS, filter=f'sub = "{SUB}"'),)


def test_uuid_sub_in_list_is_one_lookup_per_distinct_uuid():
    p = plan(Qual("sub", ("=", True), [SUB, SUB.upper(), None]), columns=UUID_COLUMNS)
    assert p.requests == (Request(LIST_USERS, filter=f'sub = "{SUB}"'),)


@pytest.mark.parametrize("value", ["?", "not-a-uuid", 42])
def test_a_uuid_sub_value_that_is_no_uuid_is_refused(value):
    p = plan(Qual("sub", "=", value), columns=UUID_COLUMNS)
    assert p.kind == SCAN and reasons(p) == ["value"]


def test_unsearchable_columns_are_refused():
    assert reasons(plan(Qual("nickname", "=", "x"), Qual("tenant", "=", "y"))) == [
        "column",
        "column",
    ]


@pytest.mark.parametrize(
    "operator, value, expected",
    [("=", "t", "Enabled"), ("=", "f", "Disabled"), ("<>", "t", "Disabled"),
     ("<>", "f", "Enabled"), ("IS", "t", "Enabled"), ("IS", "f", "Disabled")],
)  # fmt: skip
def test_enabled_becomes_the_status_filter(operator, value, expected):
    p = plan(Qual("enabled", operator, value))
    assert p.requests == (Request(LIST_USERS, filter=f'status = "{expected}"'),)


def test_enabled_is_refused_when_not_boolean_or_not_a_plain_comparison():
    assert reasons(plan(Qual("enabled", "IS NOT", "f"))) == ["operator"]
    assert reasons(plan(Qual("enabled", "IS NOT", None))) == ["null"]
    assert reasons(plan(Qual("enabled", ("=", True), ["t"]))) == ["operator"]
    text_enabled = column_definitions(enabled="text")
    assert reasons(plan(Qual("enabled", "=", "true"), columns=text_enabled)) == ["type"]


def test_in_is_one_lookup_per_distinct_non_null_value():
    p = plan(Qual("email", ("=", True), ["a@x", "b@x", "a@x", None]))
    assert p.kind == LOOKUPS
    assert [r.filter for r in p.requests] == ['email = "a@x"', 'email = "b@x"']
    assert p.estimated_requests == 2


def test_an_empty_in_list_asks_nothing():
    p = plan(Qual("email", ("=", True), []), Qual("username", "=", "alice"))
    assert p.kind == NONE and p.requests == ()
    assert "no request" in p.explain()[0]


# Multicorn's shapes: IS NULL is ('=', None), IS NOT NULL ('<>', None), IS UNKNOWN
# ('IS', None); col = $1 with NULL, or a NULL join key, is ('=', None) too.
@pytest.mark.parametrize(
    "qual",
    [Qual("username", ("=", True), None), Qual("email", ("=", True), None),
     Qual("nickname", ("=", True), None), Qual("email", ("=", True), []),
     Qual("email", ("=", True), [None, None]), Qual("username", ("<>", False), ["a", None]),
     Qual("email", ("<>", False), None), Qual("tenant", ("~~", True), [None]),
     Qual("username", "=", None), Qual("sub", "=", None), Qual("status", "=", None),
     Qual("enabled", "=", None), Qual("enabled", "IS", None), Qual("email", "~~", None),
     Qual("email", "<", None), Qual("nickname", ">=", None)],
)  # fmt: skip
def test_a_qual_no_row_can_satisfy_asks_nothing(qual):
    for quals in ([qual], [Qual("email", "=", "a@x"), qual]):
        p = plan(*quals, users=lambda: pytest.fail("the pool size is not needed"), limit=5)
        assert p.kind == NONE and p.requests == () and p.estimated_requests == 0
        assert p.explain() == [
            "Cognito: no request: the condition cannot be true (NULL, an empty list or no "
            "name Cognito could hold): " + qual_text(qual)
        ]


@pytest.mark.parametrize(
    "qual",
    [Qual("email", "=", None), Qual("mail", "=", None), Qual("nickname", "=", None),
     Qual("tenant", "IS", None), Qual("username", "<>", None), Qual("enabled", "IS NOT", None),
     Qual("username", ("<>", False), []), Qual("username", ("@@", True), [None])],
)  # fmt: skip
def test_a_null_qual_that_may_be_true_reads_the_pool(qual):
    # email = NULL-parameter and email IS NULL arrive alike; the latter has rows, and
    # Cognito cannot search for a missing attribute: scan, PostgreSQL re-checks.
    p = plan(qual)
    assert p.kind == SCAN and p.requests == (Request(LIST_USERS),)


def test_an_in_list_looks_up_its_non_null_values_only():
    p = plan(Qual("username", ("=", True), ["a", None, "a"]))
    assert p.kind == LOOKUPS and p.requests == (Request(LIST_USERS, filter='username = "a"'),)


def test_pushdown_off_decides_nothing_even_from_null():
    p = plan(Qual("username", ("=", True), None), pushdown=False)
    assert p.kind == SCAN and reasons(p) == ["off"]


def test_in_beyond_the_bound_scans_and_one_bad_value_refuses_the_list():
    many = [f"u{i}" for i in range(plans.MAX_LOOKUPS + 1)]
    assert reasons(plan(Qual("username", ("=", True), many))) == ["in-bound"]
    assert reasons(plan(Qual("email", ("=", True), ["a", 'b"']))) == ["escape"]


def test_the_most_selective_qual_wins_and_the_others_are_recorded():
    p = plan(
        Qual("enabled", "=", "t"),
        Qual("given_name", "=", "Ann"),
        Qual("email", "~~", "ann%"),
        Qual("email", "=", "ann@x"),
        Qual("sub", "=", "abc"),
    )
    assert p.requests == (Request(LIST_USERS, filter='sub = "abc"'),)
    assert p.pushed == "sub = 'abc'"
    assert reasons(p) == ["not-chosen"] * 4


def test_a_single_lookup_beats_an_in_list_of_the_same_rank():
    p = plan(Qual("username", ("=", True), ["a", "b"]), Qual("sub", "=", "s"))
    assert p.requests == (Request(LIST_USERS, filter='sub = "s"'),)


def test_pushdown_off_refuses_everything_and_keeps_the_full_scan():
    p = plan(Qual("username", "=", "alice"), pushdown=False, users=100)
    assert p.kind == SCAN and p.requests == (Request(LIST_USERS),)
    assert reasons(p) == ["off"]


def test_limit_and_offset_bound_what_is_asked():
    p = plan(limit=10, users=100_000)
    assert p.limit == 10 and p.estimated_requests == 1 and p.estimated_rows == 10
    assert "page size 10" in p.explain()[0]
    assert plan(limit=10, offset=55).estimated_requests == 2
    assert plan(limit=0).requests == ()


def test_a_large_unfiltered_scan_reads_sixteen_disjoint_sub_parts():
    p = plan(users=10_000, workers=4)
    assert p.kind == PARTS and p.workers == 4
    assert [r.filter for r in p.requests] == [f'sub ^= "{c}"' for c in "0123456789abcdef"]
    assert p.estimated_requests == 16 * 11
    assert plan(users=10_000, workers=1).kind == SCAN
    assert plan(users=pushdown.PARTITION_MIN_USERS - 1, workers=4).kind == SCAN
    assert plan(users=10_000, workers=4, limit=100).kind == SCAN


def test_sequential_scan_estimate_is_ceil_of_users_over_sixty():
    assert plan(users=150).estimated_requests == 3
    assert plan(users=1, workers=4).estimated_requests == 1


def test_estimates_shrink_for_pushed_quals():
    assert plan(Qual("email", "=", "a")).estimated_rows == 2
    assert plan(Qual("given_name", "=", "a")).estimated_rows == 10
    assert plan(Qual("enabled", "=", "t"), users=1000).estimated_rows == 500
    assert plan(users=0).estimated_rows == 1


def test_path_keys_offer_text_username_sub_and_email_only():
    assert sorted(pushdown.path_keys(targets())) == [
        (("email",), 2), (("mail",), 2), (("sub",), 1), (("username",), 1)
    ]  # fmt: skip
    citext = column_definitions(username="citext", sub="uuid", email="text")
    assert pushdown.path_keys(targets(citext)) == [(("email",), 2)]


def test_a_uuid_sub_is_pushed_for_constants_but_never_a_path_key():
    # Under EXPLAIN, Multicorn converts a uuid join parameter's empty value in C and crashes the
    # backend (docs/multicorn.md H1: EXPLAIN of a by-reference parameter crashes): a uuid column
    # must never be parameterized.
    assert pushdown.targets(UUID_COLUMNS, resolve_columns(UUID_COLUMNS, dict))["sub"].type_ok
    assert pushdown.path_keys(targets(UUID_COLUMNS)) == [(("username",), 1)]


def test_explain_shows_operation_filter_page_size_and_refusals():
    lines = plan(Qual("email", "=", "a@x"), Qual("name", "~~*", "b%")).explain()
    assert lines[0] == "Cognito: 1 lookup, page size 60, about 1 request"
    assert lines[1] == 'Cognito: ListUsers Filter: email = "a@x"'
    assert lines[2] == "Cognito: pushed down: email = 'a@x'"
    assert lines[3].startswith("Cognito: left to PostgreSQL: name ILIKE 'b%': Cognito has no")
    lookup = plan(Qual("username", "=", "al'ice"), username_lookup=pushdown.BY_ADMIN_GET_USER)
    assert lookup.explain()[1:3] == [
        'Cognito: AdminGetUser Username: "al\'ice"',
        f"Cognito: billed: {plans.BILLED}",
    ]


# -- nondeterministic collations (docs/multicorn.md H10: quals carry no collation) ------


@pytest.mark.parametrize(
    "qual",
    [Qual("username", "=", "bob"), Qual("email", ("=", True), ["a@x", "b@x"]),
     Qual("given_name", "~~", "Zo%"), Qual("status", "=", "CONFIRMED"), Qual("sub", "=", "s"),
     Qual("username", ("=", True), ["a b"])],
)  # fmt: skip
def test_no_text_qual_is_pushed_while_a_nondeterministic_collation_exists(qual):
    p = plan(qual, collations=("ci", "ai"))
    assert p.kind == SCAN and p.requests == (Request(LIST_USERS),) and reasons(p) == ["collation"]
    assert p.explain()[-1] == "Cognito: nondeterministic collations in this database: ci, ai"
    assert plan(qual, collations=()).requests != (Request(LIST_USERS),)


def test_enabled_and_a_uuid_sub_have_no_collation_and_are_still_pushed():
    p = plan(Qual("enabled", "=", "t"), Qual("email", "=", "a@x"), collations=("ci",))
    assert p.requests == (Request(LIST_USERS, filter='status = "Enabled"'),)
    assert reasons(p) == ["collation"]
    sub = "0e6c3b2a-1111-4222-8333-944455556666"
    uuid_plan = plan(Qual("sub", "=", sub), columns=UUID_COLUMNS, collations=("ci",))
    assert uuid_plan.requests == (Request(LIST_USERS, filter=f'sub = "{sub}"'),)
    assert not uuid_plan.collations


def test_the_collations_are_read_only_when_a_text_qual_could_be_pushed():
    def unread():
        raise AssertionError("pg_collation read for a plan that pushes no text")

    assert plan(Qual("enabled", "=", "t"), Qual("name", "~~*", "a%"), collations=unread).requests
    assert plan(Qual("email", "=", None), collations=unread).kind == SCAN
    read = []

    def collations():
        read.append(1)
        return ("ci",)

    p = plan(Qual("email", "=", "a@x"), Qual("username", "=", "b"), collations=collations)
    assert reasons(p) == ["collation", "collation"] and read == [1]  # once per plan


def test_no_path_key_while_a_nondeterministic_collation_exists():
    assert pushdown.path_keys(targets(), ("ci",)) == []


# -- NULL keys: IS NULL is told from a NULL parameter by what planning saw ------------
# (docs/multicorn.md M10: IS NULL and a NULL key arrive alike)


def test_a_null_key_on_a_column_never_planned_is_null_asks_nothing():
    tests = nulls.NullTests()
    tests.note([Qual("username", "=", "a"), Qual("nickname", "=", None)])
    key = plan(Qual("email", "=", None), null_tests=tests)
    assert key.kind == NONE and key.requests == ()
    # IS NULL planned on the column: the same qual may be it, so the pool is read.
    tests.note([Qual("email", "=", None)])
    assert plan(Qual("email", "=", None), null_tests=tests).kind == SCAN
    assert plan(Qual("nickname", "=", None), null_tests=tests).kind == SCAN
    # IS NOT NULL, IS UNKNOWN and nothing known stay as they were.
    assert plan(Qual("phone_number", "<>", None), null_tests=tests).kind == SCAN
    assert plan(Qual("tenant", "IS", None), null_tests=tests).kind == SCAN
    assert plan(Qual("phone_number", "=", None)).kind == SCAN


def test_every_refusal_used_is_documented():
    assert set(plans.REFUSALS) >= {
        "off", "column", "type", "operator", "null", "value", "empty", "escape", "control",
        "whitespace", "length", "like-escape", "like-prefix", "enabled-value", "in-bound",
        "not-chosen", "collation",
    }  # fmt: skip


# -- property: a plan never loses a row --------------------------------------------------

HOSTILE = st.sampled_from(['"', "\\", "%", "_", "'", " ", "é", "Ω", "李", "a", "A", "b", "\n", ""])
VALUES = st.lists(HOSTILE, max_size=5).map("".join)
SEARCHABLE = ["username", "sub", "email", "phone_number", "given_name", "status"]
NULLABLE = ["email", "phone_number", "given_name"]  # attributes a user may lack
# What Cognito accepts as a user name.
USERNAMES = st.lists(st.sampled_from(["%", "_", "'", '"', "\\", "é", "李", "a", "A"]), min_size=1,
                     max_size=5).map("".join)  # fmt: skip


def _pg_like(value: str, pattern: str) -> bool:
    """PostgreSQL's LIKE (backslash escapes) as a regular expression."""
    regex, chars = "", iter(pattern)
    for ch in chars:
        if ch == "\\":
            regex += re.escape(next(chars, "\\"))
        else:
            regex += {"%": ".*", "_": "."}.get(ch, re.escape(ch))
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _pg_match(user: dict, qual) -> bool:
    # SQL's three-valued logic; ('=', None) read as IS NULL, the reading with more rows.
    value = user[qual.field_name]
    if isinstance(qual.operator, tuple):
        return value is not None and value in (qual.value or [])
    if qual.value is None:
        return qual.operator == "=" and value is None
    if value is None:
        return False
    if qual.operator == "=":
        return value == qual.value
    return _pg_like(value, qual.value)


def _cognito_match(user: dict, request: Request) -> bool:
    # The stricter reading of the API (case-sensitive, no unescaping, like moto).
    if request.operation == ADMIN_GET_USER:
        return user["username"] == request.username
    if request.filter is None:
        return True
    attribute, op, quoted = request.filter.split(" ", 2)
    target = quoted[1:-1]
    value = user[{"cognito:user_status": "status"}.get(attribute, attribute)]
    if value is None:  # a missing attribute matches no filter
        return False
    return value == target if op == "=" else value.startswith(target)


MAYBE_NULL = st.one_of(st.none(), VALUES)


@settings(max_examples=400, deadline=None)
@given(
    users=st.lists(
        st.fixed_dictionaries(
            {
                c: USERNAMES if c == "username" else MAYBE_NULL if c in NULLABLE else VALUES
                for c in SEARCHABLE
            }  # fmt: skip
        ),
        max_size=8,
    ),
    quals=st.lists(
        st.tuples(
            st.sampled_from(SEARCHABLE),
            st.sampled_from(["=", "~~", ("=", True)]),
            MAYBE_NULL,
            st.one_of(st.none(), st.lists(MAYBE_NULL, max_size=3)),
        ),
        max_size=3,
    ),
    lookup=st.sampled_from([pushdown.BY_LIST_USERS, pushdown.BY_ADMIN_GET_USER]),
)
def test_a_plan_fetches_every_user_the_quals_match(users, quals, lookup):
    quals = [Qual(c, op, many if isinstance(op, tuple) else one) for c, op, one, many in quals]
    p = plan(*quals, users=len(users), workers=1, username_lookup=lookup)
    wanted = [u for u in users if all(_pg_match(u, q) for q in quals)]
    fetched = [u for u in users if any(_cognito_match(u, r) for r in p.requests)]
    assert all(u in fetched for u in wanted)


def test_a_lookup_plan_does_not_ask_for_the_pool_size():
    def no_describe():
        raise AssertionError("DescribeUserPool called for a lookup")

    assert plan(Qual("username", "=", "a"), users=no_describe).estimated_rows == 1
    assert plan(Qual("email", ("=", True), ["a", "b"]), users=no_describe).estimated_rows == 4
    assert plan(users=lambda: 120).estimated_requests == 2


@pytest.mark.parametrize("users", [1, 59, 200, 2_500, 9_999])
@pytest.mark.parametrize("workers", [1, 4])
def test_a_scan_of_fewer_than_10000_users_costs_less_than_the_jit_threshold(users, workers):
    # PostgreSQL's default jit_above_cost is 100,000; Multicorn's total cost is rows x width.
    p = plan(users=users, workers=workers)
    rows, width = plans.planner_size(p)
    assert rows == users
    assert rows * width < 100_000
    assert rows * width >= p.estimated_requests * plans.REQUEST_COST


def test_the_cost_is_the_requests_not_the_bytes():
    size = plans.planner_size
    one = size(plan(Qual("username", "=", "a"), users=100_000))
    assert one == (1, plans.REQUEST_COST)
    scan = size(plan(users=100_000, workers=1))
    assert scan[0] == 100_000 and scan[0] * scan[1] >= 1667 * plans.REQUEST_COST
    # A lookup costs less than a scan of any pool of more than one page; nothing costs one.
    assert one[0] * one[1] < size(plan(users=61))[0] * size(plan(users=61))[1]
    assert size(plan(Qual("username", "=", None))) == (1, 1)


def test_collation_names_in_explain_are_bounded_and_one_line():
    from cognito_fdw.plans import SHOWN_COLLATIONS, shown_names

    assert shown_names(["ci", "ai"]) == "ci, ai"
    assert shown_names(["a\nb\x00"]) == "a\\nb\\x00"
    names = [f"c{i}" for i in range(SHOWN_COLLATIONS + 5)]
    assert shown_names(names).endswith(f"c{SHOWN_COLLATIONS - 1} and 5 more")


# What Multicorn hands over when it converts a non-constant expression with a wrong type
# (docs/multicorn.md H12: the type read from the wrong place): an array as a str, a scalar as
# anything.
MISTYPED_SCALARS = st.one_of(
    st.integers(), st.floats(), st.binary(), st.booleans(),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    st.lists(st.text(max_size=3), max_size=3),
)  # fmt: skip
MISTYPED_ARRAYS = st.one_of(
    st.text(max_size=5), st.integers(), st.binary(),
    st.lists(st.one_of(st.integers(), st.floats(), st.binary()), min_size=1, max_size=3),
)  # fmt: skip
SEARCHABLE = ["username", "sub", "email", "phone_number", "given_name", "name", "status"]


@settings(max_examples=300)
@given(
    column=st.sampled_from([*SEARCHABLE, "enabled"]),
    operator=st.sampled_from(["=", ("=", True), "~~"]),
    data=st.data(),
)
def test_a_value_of_the_wrong_shape_is_never_taken_for_no_match(column, operator, data):
    # Pushing nothing reads the pool and PostgreSQL filters; a NONE plan or a filter made
    # from such a value would lose rows.
    array = isinstance(operator, tuple)
    mistyped = data.draw(MISTYPED_ARRAYS if array else MISTYPED_SCALARS)
    if column == "enabled" and isinstance(mistyped, bool):
        return  # a boolean is what enabled's value is
    p = plan(Qual(column, operator, mistyped))
    assert p.kind in (SCAN, PARTS), p
    assert all(r.filter is None or r.filter.startswith("sub ^=") for r in p.requests), p


def test_an_array_read_as_text_is_left_to_postgresql_with_the_safe_form():
    # Multicorn 3.2 converts a generic plan's IN ($1, $2) with the element's type: a str.
    p = plan(Qual("username", ("=", True), "\x01"))
    assert p.kind == SCAN and reasons(p) == ["mistyped"]
    assert "(SELECT ARRAY[" in "\n".join(p.explain())
    assert not nulls.cannot_match(Qual("username", ("=", True), ""), never_null=True)


def test_a_rescans_stable_lookup_is_preferred_to_the_join_key():
    # A generic plan's email = $1 beside a join's sub key: email's answer is cached after
    # the first scan, so one request in all instead of one per outer row.
    quals = (Qual("sub", "=", "0f0f"), Qual("email", "=", "ann@example.com"))
    assert plan(*quals).requests == (Request(LIST_USERS, filter='sub = "0f0f"'),)
    stable = {qual_text(quals[1])}
    chosen = plan(*quals, stable=stable)
    assert chosen.requests == (Request(LIST_USERS, filter='email = "ann@example.com"'),)
    prefix = (Qual("sub", "=", "0f0f"), Qual("email", "~~", "ann%"))
    assert (
        plan(*prefix, stable={qual_text(prefix[1])}).requests[0].filter.startswith("sub =")
    )  # only a lookup is cached: a stable LIKE prefix is no reason to scan


def test_at_the_first_scan_a_path_key_after_another_lookup_is_taken_for_a_join_key():
    # PostgreSQL puts a parameterized scan's join keys after the table's own conditions.
    quals = (Qual("email", "=", "ann@example.com"), Qual("sub", "=", "0f0f"))
    assert plan(*quals).requests == (Request(LIST_USERS, filter='sub = "0f0f"'),)
    first = plan(*quals, first_scan=True)
    assert first.requests == (Request(LIST_USERS, filter='email = "ann@example.com"'),)
    # Alone, or first, or not a lookup before it: nothing to defer to.
    assert plan(quals[1], first_scan=True).requests == plan(quals[1]).requests
    reverse = (quals[1], quals[0])
    assert plan(*reverse, first_scan=True).requests == plan(*reverse).requests
    prefix = (Qual("email", "~~", "ann%"), Qual("sub", "=", "0f0f"))
    assert plan(*prefix, first_scan=True).requests[0].filter == 'sub = "0f0f"'


@settings(max_examples=300, deadline=None)
@given(
    username=st.one_of(
        st.sampled_from(["alice", "", " alice", 'a"b', "a\\b", "a\nb", "x" * 200, "a" * 129]),
        st.text(max_size=40),
    ),
    lookup=st.sampled_from([pushdown.BY_LIST_USERS, pushdown.BY_ADMIN_GET_USER]),
)
def test_the_username_lookup_plan_is_the_plan_of_username_equal(username, lookup):
    # group_members looks a member up without making a qual: the same plan as the users
    # table makes for username = 'x' (a lookup, a read of the pool with its reason, or none).
    column = {"username": pushdown.Target("username", "username", True, never_null=True)}
    made = pushdown.plan_scan(
        [Qual("username", "=", username)], column, estimated_users=7, username_lookup=lookup
    )
    assert pushdown.username_plan(username, estimated_users=7, username_lookup=lookup) == made


def test_a_new_pushable_column_is_one_registry_row(monkeypatch):
    # nickname is a standard attribute Cognito does not search: refused for its column.
    columns = column_definitions(username="text", nickname="text")
    quals = [Qual("nickname", "=", "bo"), Qual("nickname", "~~", "bo%")]
    assert reasons(plan(*quals, columns=columns)) == ["column", "column"]
    assert "nickname" not in plans.REFUSALS["column"]
    # One row, and the planner pushes it: equality, a LIKE prefix, a join's path key.
    row = Searchable("nickname", 2, 10, path_key=True)
    monkeypatch.setitem(registry.SEARCHABLE, "nickname", row)
    found = targets(columns)
    assert found["nickname"] == pushdown.Target("nickname", "nickname", True)
    pushed = plan(quals[0], columns=columns)
    assert (pushed.kind, reasons(pushed)) == (LOOKUPS, [])
    assert pushed.requests == (Request(LIST_USERS, filter='nickname = "bo"'),)
    assert plan(quals[1], columns=columns).requests[0].filter == 'nickname ^= "bo"'
    assert (("nickname",), 10) in pushdown.path_keys(found)


def test_the_refusal_lists_the_registrys_searchable_columns_in_its_order():
    names = [s.column for s in registry.SEARCHABLE.values()]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    assert plans.REFUSALS["column"] == f"Cognito cannot search this column (only {listed})"
