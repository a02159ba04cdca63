"""Tier 2: group_members on a real server: its access paths and what each costs, writes
refused with a reason or applied at COMMIT.

They run on the groups pool (fixture ``gt``: server groups_server, schema gt), so the shared
150-user pool other tests read is never changed.

Billing (docs/pushdown.md): the user columns (email, sub, ...) are read as the users table reads
``username = 'x'``: a ListUsers filter by default; AdminGetUser, which counts each user it
finds as a monthly active user, only under the server option ``username_lookup
'admin_get_user'``.  Those requests are counted per operation by the fault proxy between the
wrapper and moto, on a pool of that section's own.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from ..support.accounting import counting, requests_of
from ..support.pool import BIG
from ..support.postgres import create_server, explain_text, new_role, role_dsn
from ..support.proxy import Fault
from ..support.reliability import record

pytestmark = pytest.mark.server


def members(cognito, pool_id, group) -> set[str]:
    pages = cognito.get_paginator("list_users_in_group").paginate(
        UserPoolId=pool_id, GroupName=group
    )
    return {u["Username"] for page in pages for u in page["Users"]}


def rows(db, sql, params=None):
    return db.execute(sql, params).fetchall()


# -- reading -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, expected, requests",
    [
        ("group_name = 'admins'", {("admins", "alice"), ("admins", "bob")}, [1]),
        ("username = 'alice'", {("admins", "alice"), ("staff", "alice")}, [1]),
        ("group_name = 'admins' AND username = 'bob'", {("admins", "bob")}, [1]),
        ('membership = \'["staff", "alice"]\'', {("staff", "alice")}, [1]),
        # Multicorn fails on a bare json_build_array(...) qual (lookup failed for type):
        # a scalar subquery is evaluated first and arrives as a value.
        (
            "membership = (SELECT json_build_array('admins', 'bob')::text)",
            {("admins", "bob")},
            [1],
        ),
        ("username IN ('alice', 'bob', 'carol')", None, [3]),
        ("group_name IN ('admins', 'staff')", None, [2]),
        ("group_name = 'empty'", set(), [1]),
        ("group_name = 'nope'", set(), [1]),
        ("username = 'nobody'", set(), [1]),
        ("username LIKE 'al%'", {("admins", "alice"), ("staff", "alice")}, [1 + 1 + 1 + 1 + 2]),
    ],
)
def test_member_access_paths_and_their_requests(db, groups_pool_id, where, expected, requests):
    with counting(db):
        got = set(rows(db, f"SELECT group_name, username FROM gt.members WHERE {where}"))
        assert requests_of(db) == requests
    if expected is not None:
        assert got == expected


def test_user_columns_cost_one_record_lookup_on_the_user_path(db, groups_pool_id):
    with counting(db):
        got = rows(db, "SELECT group_name, email FROM gt.members WHERE username = 'bob'")
        assert requests_of(db) == [2]
        assert got == [("admins", "bob@example.com")]
        rows(db, "SELECT email FROM gt.members WHERE group_name = 'admins'")
        assert requests_of(db) == [1]  # ListUsersInGroup brings the attributes


def test_a_group_scan_pages_through_every_member(db, groups_pool_id):
    with counting(db):
        got = rows(db, "SELECT count(*) FROM gt.members WHERE group_name = 'big'")
        assert requests_of(db) == [2]
    assert got == [(BIG,)]


def test_explain_names_the_cognito_calls(db, groups_pool_id):
    def plan(where):
        return explain_text(db, f"EXPLAIN SELECT * FROM gt.members WHERE {where}")

    assert "AdminListGroupsForUser for 1 user(s), page size 60" in plan("username = 'x'")
    assert "then the record of each one in a group" in plan("username = 'x'")
    assert "ListUsersInGroup for 1 group(s)" in plan("group_name = 'x'")
    assert "ListGroups, then ListUsersInGroup for every group" in plan("true")
    verbose_text = explain_text(db, "EXPLAIN VERBOSE SELECT * FROM gt.groups")
    assert f"Cognito: region us-east-1, user pool {groups_pool_id}" in verbose_text


def test_a_join_reads_one_user_per_outer_row(db, groups_pool_id):
    with counting(db):
        got = rows(
            db,
            "SELECT v.u, m.group_name FROM (VALUES ('alice'), ('bob')) v(u) "
            "JOIN gt.members m ON m.username = v.u ORDER BY 1, 2",
        )
        counts = requests_of(db)
    assert got == [("alice", "admins"), ("alice", "staff"), ("bob", "admins")]
    assert counts == [1, 1]  # one AdminListGroupsForUser per outer row, not the full walk


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql, message",
    [
        (
            "INSERT INTO gt.members_ro VALUES ('staff', 'bob')",
            "group_members is read-only: set the table option writable 'true'",
        ),
        ("INSERT INTO gt.groups (group_name) VALUES ('x')", "object 'groups' is read-only"),
        ("DELETE FROM gt.groups", "object 'groups' is read-only"),
        (
            "UPDATE gt.members SET username = 'x' WHERE username = 'bob'",
            "UPDATE is not supported on group_members",
        ),
        (
            "INSERT INTO gt.members (group_name) VALUES ('staff')",
            "INSERT into group_members needs group_name and username",
        ),
    ],
)
def test_refused_writes_say_why(db, groups_pool_id, sql, message):
    with pytest.raises(psycopg.Error) as caught:
        db.execute(sql)
    assert message in caught.value.diag.message_primary
    assert "Error in python" not in str(caught.value)


# -- writing at COMMIT -------------------------------------------------------------------


def test_insert_and_delete_reach_cognito_at_commit(db, groups_pool_id, cognito):
    with counting(db):
        with db.transaction():
            db.execute("INSERT INTO gt.members (group_name, username) VALUES ('staff', 'carol')")
            # Visible in the transaction, not yet in Cognito.
            assert ("staff", "carol") in rows(db, "SELECT group_name, username FROM gt.members")
            assert "carol" not in members(cognito, groups_pool_id, "staff")
        # At COMMIT: carol's groups read again (as Cognito is now), then AdminAddUserToGroup.
        assert requests_of(db)[-1] == 2
    assert "carol" in members(cognito, groups_pool_id, "staff")

    db.execute("DELETE FROM gt.members WHERE group_name = 'staff' AND username = 'carol'")
    assert "carol" not in members(cognito, groups_pool_id, "staff")


def test_insert_returning_gives_the_membership_key(db, groups_pool_id, cognito):
    with db.transaction():
        got = rows(
            db,
            "INSERT INTO gt.members (group_name, username) VALUES ('empty', 'erin') "
            "RETURNING membership",
        )
        assert got == [('["empty", "erin"]',)]
        db.execute("DELETE FROM gt.members WHERE membership = %s", (got[0][0],))
    assert members(cognito, groups_pool_id, "empty") == set()


def test_rollback_sends_nothing(db, groups_pool_id, cognito):
    before = members(cognito, groups_pool_id, "admins")
    with counting(db):
        db.execute("BEGIN")
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('admins', 'dave')")
        db.execute("DELETE FROM gt.members WHERE group_name = 'admins' AND username = 'bob'")
        db.execute("ROLLBACK")
        assert requests_of(db) == [1]  # only the DELETE's scan
    assert members(cognito, groups_pool_id, "admins") == before


def test_rollback_to_savepoint_drops_the_changes_since_it(db, groups_pool_id, cognito):
    db.execute("BEGIN")
    db.execute("INSERT INTO gt.members (group_name, username) VALUES ('staff', 'bob')")
    db.execute("SAVEPOINT s1")
    db.execute("INSERT INTO gt.members (group_name, username) VALUES ('staff', 'dave')")
    db.execute("ROLLBACK TO SAVEPOINT s1")
    db.execute("SAVEPOINT s2")
    db.execute("INSERT INTO gt.members (group_name, username) VALUES ('staff', 'erin')")
    with pytest.raises(psycopg.errors.DivisionByZero):
        db.execute("SELECT 1/0")
    db.execute("ROLLBACK TO SAVEPOINT s2")
    db.execute("SAVEPOINT s3")
    db.execute("DELETE FROM gt.members WHERE group_name = 'staff' AND username = 'alice'")
    db.execute("RELEASE SAVEPOINT s3")
    assert "dave" not in members(cognito, groups_pool_id, "staff")
    db.execute("COMMIT")
    assert members(cognito, groups_pool_id, "staff") == {"bob"}
    # Put staff back as it was.
    db.execute("INSERT INTO gt.members (group_name, username) VALUES ('staff', 'alice')")
    db.execute("DELETE FROM gt.members WHERE group_name = 'staff' AND username = 'bob'")
    assert members(cognito, groups_pool_id, "staff") == {"alice"}


def test_a_row_inserted_and_deleted_in_one_transaction_sends_nothing(db, groups_pool_id, cognito):
    with counting(db):
        with db.transaction():
            db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', 'dave')")
            db.execute("DELETE FROM gt.members WHERE group_name = 'empty' AND username = 'dave'")
        assert requests_of(db) == [1]  # the DELETE's scan; COMMIT has nothing to do
    assert members(cognito, groups_pool_id, "empty") == set()


def test_adding_an_existing_member_is_quiet_and_sends_no_write(db, groups_pool_id, cognito):
    with counting(db):
        with db.transaction():
            db.execute("INSERT INTO gt.members (group_name, username) VALUES ('admins', 'alice')")
        assert requests_of(db) == [1]  # alice's groups: already a member
    assert members(cognito, groups_pool_id, "admins") == {"alice", "bob"}


def test_a_failing_commit_aborts_undoes_and_names_the_failure(db, groups_pool_id, cognito):
    db.execute("BEGIN")
    db.execute("INSERT INTO gt.local_log VALUES ('granted')")
    db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', 'carol')")
    db.execute("DELETE FROM gt.members WHERE group_name = 'admins' AND username = 'bob'")
    db.execute("INSERT INTO gt.members (group_name, username) VALUES ('no-such-group', 'carol')")
    with pytest.raises(psycopg.Error) as caught:
        db.execute("COMMIT")
    diag = caught.value.diag
    assert diag.message_primary.startswith(
        "cannot add user 'carol' to group 'no-such-group' at COMMIT: Cognito AdminAddUserToGroup "
        f"failed: group 'no-such-group' does not exist in user pool {groups_pool_id} "
        "(ResourceNotFoundException); the transaction is rolled back"
    )
    assert "the transaction is rolled back" in diag.message_primary
    assert "NOT undone" not in diag.message_primary
    assert "Create the group in Cognito first" in diag.message_hint
    assert "undone in Cognito: the 2 change(s)" in diag.message_detail
    assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert rows(db, "SELECT * FROM gt.local_log") == []
    assert members(cognito, groups_pool_id, "empty") == set()
    assert members(cognito, groups_pool_id, "admins") == {"alice", "bob"}


def test_an_unknown_user_fails_at_commit_with_its_name(db, groups_pool_id, cognito):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('staff', 'ghost')")
    assert caught.value.diag.message_primary.startswith(
        "cannot add user 'ghost' to group 'staff' at COMMIT: Cognito AdminAddUserToGroup "
        "failed: user 'ghost' does not exist"
    )
    assert members(cognito, groups_pool_id, "staff") == {"alice"}


def test_delete_by_group_removes_every_member(db, groups_pool_id, cognito):
    for user in ("carol", "dave"):
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', %s)", (user,))
    with counting(db):
        deleted = db.execute("DELETE FROM gt.members WHERE group_name = 'empty'").rowcount
        # The scan; at COMMIT each user's groups read again, then two removals.
        assert requests_of(db) == [1, 4]
    assert deleted == 2
    assert members(cognito, groups_pool_id, "empty") == set()


def test_changes_survive_the_table_being_altered_in_the_transaction(db, groups_pool_id, cognito):
    # ALTER makes Multicorn drop the wrapper instance holding the change and make another.
    with db.transaction():
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', 'erin')")
        db.execute("ALTER FOREIGN TABLE gt.members OPTIONS (ADD read_timeout '20')")
        assert rows(db, "SELECT username FROM gt.members WHERE group_name = 'empty'") == []
    assert members(cognito, groups_pool_id, "empty") == {"erin"}
    db.execute("ALTER FOREIGN TABLE gt.members OPTIONS (DROP read_timeout)")
    db.execute("DELETE FROM gt.members WHERE group_name = 'empty'")
    assert members(cognito, groups_pool_id, "empty") == set()


def test_two_tables_commit_together_and_are_undone_together(db, groups_pool_id, cognito):
    db.execute(
        "CREATE FOREIGN TABLE gt.members2 (group_name text, username text, membership text) "
        "SERVER groups_server OPTIONS (object 'group_members', writable 'true')"
    )
    db.execute("BEGIN")
    db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', 'dave')")
    db.execute("INSERT INTO gt.members2 (group_name, username) VALUES ('nope', 'dave')")
    with pytest.raises(psycopg.Error, match="cannot add user 'dave' to group 'nope'"):
        db.execute("COMMIT")
    assert members(cognito, groups_pool_id, "empty") == set()
    with db.transaction():
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', 'dave')")
        db.execute("INSERT INTO gt.members2 (group_name, username) VALUES ('staff', 'dave')")
    assert members(cognito, groups_pool_id, "empty") == {"dave"}
    assert "dave" in members(cognito, groups_pool_id, "staff")
    db.execute("DELETE FROM gt.members2 WHERE username = 'dave'")
    assert groups_of_dave(cognito, groups_pool_id) == set()


def groups_of_dave(cognito, pool_id) -> set[str]:
    found = cognito.admin_list_groups_for_user(UserPoolId=pool_id, Username="dave")["Groups"]
    return {g["GroupName"] for g in found}


# -- billing: ListUsers by default, AdminGetUser only when asked -------------------------

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
    for operation, *_ in proxy.requests():
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
        return explain_text(db, f"EXPLAIN SELECT email FROM mt.{table} WHERE username = 'ann'")

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


# -- what Cognito keeps is what PostgreSQL committed ------------------------------------


@pytest.fixture(scope="module")
def wpool(cognito):
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-commit")["UserPool"]["Id"]
    for name in ("u1", "u2", "u3"):
        cognito.admin_create_user(UserPoolId=pool_id, Username=name, MessageAction="SUPPRESS")
    for group in ("g", "h"):
        cognito.create_group(UserPoolId=pool_id, GroupName=group)
    return pool_id


@pytest.fixture(scope="module")
def wt(setup, wpool, proxy):
    """wt.members, writable, through the proxy (which counts what Cognito received), and a
    local table wt.ledger for transactions that conflict."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA wt")
        create_server(conn, "wt_srv", wpool, proxy.url, region="us-east-1", max_attempts="2")
        conn.execute(
            "CREATE FOREIGN TABLE wt.members (group_name text, username text, membership text) "
            "SERVER wt_srv OPTIONS (object 'group_members', writable 'true')"
        )
        conn.execute("CREATE TABLE wt.ledger (k text)")
    return wpool


def received(proxy) -> dict[str, int]:
    counts: dict[str, int] = {}
    for operation, *_ in proxy.requests():
        if operation != "DescribeUserPool":
            counts[operation] = counts.get(operation, 0) + 1
    return counts


def session(setup) -> psycopg.Connection:
    conn = psycopg.connect(setup.dsn, autocommit=True)
    conn.notices = []
    conn.add_notice_handler(lambda diag: conn.notices.append(diag.message_primary))
    return conn


@pytest.mark.parametrize("undo", ["succeeds", "fails"])
def test_a_serialization_failure_at_commit_undoes_what_commit_sent(setup, wt, cognito, proxy, undo):
    """PostgreSQL runs SERIALIZABLE's commit-time check after the wrapper's pre-commit hook
    has sent the changes: the transaction then rolls back, and so must Cognito; a change
    whose undo fails is a WARNING naming its group and user."""
    with session(setup) as one, session(setup) as two:
        for conn in (one, two):
            conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        one.execute("SELECT count(*) FROM wt.ledger WHERE k = 'a'")
        two.execute("SELECT count(*) FROM wt.ledger WHERE k = 'b'")
        one.execute("INSERT INTO wt.ledger VALUES ('b')")
        two.execute("INSERT INTO wt.ledger VALUES ('a')")
        two.execute("INSERT INTO wt.members (group_name, username) VALUES ('g', 'u1')")
        one.execute("COMMIT")
        faults = [Fault("500", "AdminRemoveUserFromGroup", times=-1)] if undo == "fails" else []
        proxy.arm(*faults)
        with pytest.raises(psycopg.errors.SerializationFailure):
            two.execute("COMMIT")
        counts, warnings = received(proxy), list(two.notices)
    record(
        "attack",
        "SERIALIZABLE: the commit-time serialization check fails after COMMIT sent a "
        f"membership change (the undo {undo})",
        f"Cognito received {counts}; WARNING: {warnings[-1] if warnings else None}"[:240],
    )
    assert counts.get("AdminAddUserToGroup") == 1
    if undo == "succeeds":
        assert counts.get("AdminRemoveUserFromGroup") == 1
        assert "u1" not in members(cognito, wt, "g")
        assert any("undone there: add user 'u1' to group 'g'" in w for w in warnings)
    else:
        assert counts.get("AdminRemoveUserFromGroup", 0) >= 1  # tried, with retries
        assert "u1" in members(cognito, wt, "g")
        assert any(
            "NOT undone there, still applied: add user 'u1' to group 'g'" in w for w in warnings
        )
        cognito.admin_remove_user_from_group(UserPoolId=wt, GroupName="g", Username="u1")


def test_an_undo_that_fails_names_no_credential_in_its_warning(setup, wt, cognito, proxy):
    """The WARNING for a change that could not be undone quotes why the undo failed; an
    endpoint that refuses with what it was sent (here the session token of the writer's
    user mapping) must not put the token in the WARNING, which the client sees and the
    server log keeps, as an ERROR's text is scrubbed of it."""
    token = f"EchoedTokenCanary{time.time_ns()}"
    with psycopg.connect(setup.dsn, autocommit=True) as admin:
        writer = new_role(admin)
        admin.execute(f"GRANT USAGE ON FOREIGN SERVER wt_srv TO {writer}")
        admin.execute(f"GRANT USAGE ON SCHEMA wt TO {writer}")
        admin.execute(f"GRANT SELECT, INSERT ON wt.members, wt.ledger TO {writer}")
        admin.execute(
            f"CREATE USER MAPPING FOR {writer} SERVER wt_srv OPTIONS (aws_access_key_id "
            f"'AKIDTESTING', aws_secret_access_key 'testing-secret', aws_session_token '{token}')"
        )
    two = psycopg.connect(role_dsn(setup.dsn, writer), autocommit=True)
    two.notices = []
    two.add_notice_handler(lambda diag: two.notices.append(diag.message_primary))
    with session(setup) as one, two:
        for conn in (one, two):
            conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        one.execute("SELECT count(*) FROM wt.ledger WHERE k = 'a'")
        two.execute("SELECT count(*) FROM wt.ledger WHERE k = 'b'")
        one.execute("INSERT INTO wt.ledger VALUES ('b')")
        two.execute("INSERT INTO wt.ledger VALUES ('a')")
        two.execute("INSERT INTO wt.members (group_name, username) VALUES ('g', 'u1')")
        one.execute("COMMIT")
        proxy.arm(Fault("echo", "AdminRemoveUserFromGroup", times=-1))
        with pytest.raises(psycopg.errors.SerializationFailure):
            two.execute("COMMIT")
        warnings = list(two.notices)
    cognito.admin_remove_user_from_group(UserPoolId=wt, GroupName="g", Username="u1")
    stuck = [w for w in warnings if "NOT undone there" in w]
    record(
        "attack",
        "an undo at COMMIT refused by an endpoint that echoes the writer's session token",
        f"WARNING: {stuck[-1] if stuck else None}"[:240],
    )
    assert stuck and "add user 'u1' to group 'g'" in stuck[-1]
    # The change itself refused the same way: the ERROR's DETAIL quotes AWS's message.
    with psycopg.connect(role_dsn(setup.dsn, writer), autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO wt.members (group_name, username) VALUES ('g', 'u1')")
        proxy.arm(Fault("echo", "AdminAddUserToGroup", times=-1))
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("COMMIT")
    assert "bad token ***" in caught.value.diag.message_detail
    assert token not in " ".join(warnings) + str(caught.value)
    assert token not in setup.log()


def test_a_cancel_during_commit_undoes_the_changes_already_sent(setup, wt, cognito, proxy):
    """pg_cancel_backend after the first of two changes was sent: the second stalls, the
    cancel fails COMMIT, and the first is undone although the cancel is still pending."""
    with session(setup) as conn, psycopg.connect(setup.dsn, autocommit=True) as admin:
        pid = conn.info.backend_pid
        conn.execute("BEGIN")
        conn.execute("INSERT INTO wt.members (group_name, username) VALUES ('g', 'u1')")
        conn.execute("INSERT INTO wt.members (group_name, username) VALUES ('g', 'u2')")
        proxy.arm(Fault("stall", "AdminAddUserToGroup", skip=1, seconds=20))
        failure: list[Exception] = []

        def commit():
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                failure.append(exc)

        thread = threading.Thread(target=commit)
        thread.start()
        deadline = time.monotonic() + 15
        while len(proxy.requests("AdminAddUserToGroup")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(30)
        counts = received(proxy)
    assert failure, "COMMIT went through"
    message = failure[0].diag.message_primary
    record(
        "attack",
        "pg_cancel_backend during COMMIT after the first of two changes was sent",
        f"refused and undone: Cognito received {counts}; {message[:100]}",
    )
    assert counts.get("AdminAddUserToGroup") == 2  # the second stalled, never applied
    assert counts.get("AdminRemoveUserFromGroup") == 1
    assert "NOT undone" not in message
    assert members(cognito, wt, "g") == set()


def test_two_writers_of_one_membership_end_as_postgresql_committed(setup, wt, cognito, proxy):
    """One session removes u3 from h, another (which saw u3 in h) adds it back and commits
    last: Cognito must end with u3 in h, judged at the second COMMIT, not by what that
    session saw before the first committed."""
    cognito.admin_add_user_to_group(UserPoolId=wt, GroupName="h", Username="u3")
    with session(setup) as one, session(setup) as two:
        one.execute("BEGIN")
        two.execute("BEGIN")
        one.execute("DELETE FROM wt.members WHERE group_name = 'h' AND username = 'u3'")
        two.execute("INSERT INTO wt.members (group_name, username) VALUES ('h', 'u3')")
        # Two reads u3's groups after its INSERT: u3 is in h (one has not committed yet).
        seen = two.execute("SELECT group_name FROM wt.members WHERE username = 'u3'").fetchall()
        assert seen == [("h",)]
        one.execute("COMMIT")
        assert "u3" not in members(cognito, wt, "h")
        proxy.arm()
        two.execute("COMMIT")
        counts = received(proxy)
    record(
        "attack",
        "two sessions write one membership (DELETE commits, then an INSERT by a session that "
        "had seen the member)",
        f"Cognito ends as the last COMMIT wrote: u3 in h; the second COMMIT sent {counts}",
    )
    assert counts.get("AdminAddUserToGroup") == 1
    assert "u3" in members(cognito, wt, "h")


@pytest.mark.parametrize(
    "statements",
    [
        # The table first touched two savepoints deep, rolled back to the outer one.
        ["SAVEPOINT s1", "SAVEPOINT s2",
         "INSERT INTO gt.members (group_name, username) VALUES ('staff', 'dave')",
         "ROLLBACK TO SAVEPOINT s1"],
        # A PL/pgSQL block's EXCEPTION clause: an internal subtransaction rolled back.
        ["DO $$ BEGIN INSERT INTO gt.members (group_name, username) VALUES ('staff', 'dave'); "
         "PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END $$"],
    ],
    ids=["nested savepoints", "exception block"],
)  # fmt: skip
def test_a_change_rolled_back_in_a_subtransaction_is_never_sent(
    db, groups_pool_id, cognito, statements
):
    before = members(cognito, groups_pool_id, "staff")
    db.execute("BEGIN")
    for statement in statements:
        db.execute(statement)
    db.execute("COMMIT")
    assert members(cognito, groups_pool_id, "staff") == before
