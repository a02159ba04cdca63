"""Tier 2: group_members bills nobody unless asked (issue 11, "Billing").

The user columns of group_members (email, sub, ...) are read as the users table reads
``username = 'x'``: a ListUsers filter by default; AdminGetUser, which counts each user it
finds as a monthly active user, only under the server option ``username_lookup
'admin_get_user'``.  Requests are counted per operation by the fault proxy between the
wrapper and moto.  The pool is this module's own.
"""

from __future__ import annotations

import psycopg
import pytest

from .conftest import create_server

pytestmark = pytest.mark.server

USERS = ["ann", "ben", "cat", "dan"]
MEMBERS = {"red": ["ann", "ben"], "blue": ["ann", "cat"], "none": []}  # dan is in no group


@pytest.fixture(scope="module")
def mpool(cognito):
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-members")["UserPool"]["Id"]
    for name in USERS:
        cognito.admin_create_user(
            UserPoolId=pool_id, Username=name, MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": f"{name}@example.com"}],
        )  # fmt: skip
    for group, names in MEMBERS.items():
        cognito.create_group(UserPoolId=pool_id, GroupName=group)
        for name in names:
            cognito.admin_add_user_to_group(UserPoolId=pool_id, GroupName=group, Username=name)
    return pool_id


@pytest.fixture(scope="module")
def mt(setup, mpool, proxy):
    """mt.members (defaults) and mt.members_agu (username_lookup 'admin_get_user'), both
    through the proxy; mt.keys holds usernames to join on."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA mt")
        create_server(conn, "mt_srv", mpool, proxy.url, region="us-east-1")
        create_server(
            conn, "mt_agu", mpool, proxy.url, region="us-east-1", username_lookup="admin_get_user"
        )
        for table, server in (("members", "mt_srv"), ("members_agu", "mt_agu")):
            conn.execute(
                f"CREATE FOREIGN TABLE mt.{table} (group_name text, username text, "
                f"membership text, email text, sub text) "
                f"SERVER {server} OPTIONS (object 'group_members')"
            )
        conn.execute("CREATE TABLE mt.keys (username text)")
        conn.execute("INSERT INTO mt.keys VALUES ('ann'), ('cat'), ('dan'), ('nobody')")
        conn.execute("ANALYZE mt.keys")
    return mpool


def sent(proxy, db, sql):
    """The rows of ``sql`` and the requests it sent, by operation (DescribeUserPool aside:
    the planner's cached pool size)."""
    proxy.arm()
    rows = db.execute(sql).fetchall()
    counts: dict[str, int] = {}
    for operation, _ in proxy.requests():
        if operation != "DescribeUserPool":
            counts[operation] = counts.get(operation, 0) + 1
    return rows, counts


ANN = [("blue", "ann", "ann@example.com"), ("red", "ann", "ann@example.com")]
QUERIES = {
    # query -> (rows, requests by default)
    "username =": (
        "SELECT group_name, username, email FROM {t} WHERE username = 'ann' ORDER BY 1",
        ANN,
        {"AdminListGroupsForUser": 1, "ListUsers": 1},
    ),
    "username IN": (
        "SELECT group_name, username, email FROM {t} WHERE username IN ('ann', 'dan', 'x') "
        "ORDER BY 1, 2",
        ANN,  # dan is in no group: no record read; x is nobody
        {"AdminListGroupsForUser": 3, "ListUsers": 1},
    ),
    "membership =": (
        'SELECT group_name, username, email FROM {t} WHERE membership = \'["red", "ben"]\'',
        [("red", "ben", "ben@example.com")],
        {"AdminListGroupsForUser": 1, "ListUsers": 1},
    ),
    # One lookup per outer row (OFFSET 0 keeps the planner from reading every group once,
    # which it rightly prefers on a pool this small).
    "lookup per row": (
        "SELECT m.group_name, m.username, m.email FROM mt.keys k CROSS JOIN LATERAL "
        "(SELECT * FROM {t} m WHERE m.username = k.username OFFSET 0) m ORDER BY 1, 2",
        [*ANN[:1], ("blue", "cat", "cat@example.com"), *ANN[1:]],
        {"AdminListGroupsForUser": 4, "ListUsers": 2},
    ),
    "group_name =": (
        "SELECT group_name, username, email FROM {t} WHERE group_name = 'red' ORDER BY 2",
        [("red", "ann", "ann@example.com"), ("red", "ben", "ben@example.com")],
        {"ListUsersInGroup": 1},
    ),
    "every group": (
        "SELECT count(*), count(email), count(sub) FROM {t}",
        [(4, 4, 4)],
        {"ListGroups": 1, "ListUsersInGroup": 3},
    ),
}


@pytest.mark.parametrize("shape", list(QUERIES))
def test_user_columns_send_no_admin_get_user_by_default(mt, db, proxy, shape):
    sql, expected, requests = QUERIES[shape]
    rows, counts = sent(proxy, db, sql.format(t="mt.members"))
    assert rows == expected
    assert counts == requests
    assert "AdminGetUser" not in counts  # nobody billed as a monthly active user


@pytest.mark.parametrize("shape", list(QUERIES))
def test_admin_get_user_only_when_the_server_asks_and_the_same_rows(mt, db, proxy, shape):
    sql, expected, requests = QUERIES[shape]
    rows, counts = sent(proxy, db, sql.format(t="mt.members_agu"))
    assert rows == expected
    # Each ListUsers lookup of a record becomes one AdminGetUser; nothing else changes.
    swapped = dict(requests)
    if "ListUsers" in swapped:
        swapped["AdminGetUser"] = swapped.pop("ListUsers")
    assert counts == swapped


def test_without_user_columns_no_record_is_read(mt, db, proxy):
    rows, counts = sent(proxy, db, "SELECT group_name FROM mt.members_agu WHERE username = 'ann'")
    assert sorted(rows) == [("blue",), ("red",)]
    assert counts == {"AdminListGroupsForUser": 1}


def test_explain_names_the_record_lookup_and_says_when_it_is_billed(mt, db):
    def plan(table):
        sql = f"EXPLAIN SELECT email FROM mt.{table} WHERE username = 'ann'"
        return "\n".join(r[0] for r in db.execute(sql))

    default = plan("members")
    assert "Cognito: AdminListGroupsForUser for 1 user(s), page size 60" in default
    assert "then the record of each one in a group" in default
    assert 'Cognito: ListUsers Filter: username = "ann"' in default
    assert "AdminGetUser" not in default and "billed" not in default
    billed = plan("members_agu")
    assert 'Cognito: AdminGetUser Username: "ann"' in billed
    assert "billed: AdminGetUser counts each user it finds as a monthly active user" in billed


@pytest.mark.parametrize(
    "group, user, missing, hint",
    [
        ("red", "ghost", "user 'ghost'", "Create the user in Cognito first (AdminCreateUser)"),
        ("nope", "ann", "group 'nope'", "Create the group in Cognito first (CreateGroup)"),
    ],
)
def test_an_unknown_user_or_group_gets_the_hint_for_its_cause(mt, db, group, user, missing, hint):
    db.execute(
        "CREATE FOREIGN TABLE IF NOT EXISTS mt.members_w (group_name text, username text, "
        "membership text) SERVER mt_srv OPTIONS (object 'group_members', writable 'true')"
    )
    with pytest.raises(psycopg.Error) as caught:
        db.execute("INSERT INTO mt.members_w VALUES (%s, %s)", (group, user))
    diag = caught.value.diag
    assert f"{missing} does not exist" in diag.message_primary
    assert diag.message_hint.startswith(hint)
    other = "group" if missing.startswith("user") else "user"
    assert f"Create the {other}" not in diag.message_hint
