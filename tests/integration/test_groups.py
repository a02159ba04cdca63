"""Tier 2: groups and group_members on a real server, writes applied at COMMIT.

Writes go to a pool of this module's own (server groups_server, schema gt), so the shared
150-user pool other tests read is never changed.
"""

from __future__ import annotations

import psycopg
import pytest

from .conftest import counting, create_server, requests_of

pytestmark = pytest.mark.server

USERS = ["alice", "bob", "carol", "dave", "erin"]
BIG = 70  # members of group 'big': two ListUsersInGroup pages


@pytest.fixture(scope="module")
def gpool(cognito):
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-groups")["UserPool"]["Id"]
    for name in USERS + [f"bulk{i:02d}" for i in range(BIG)]:
        cognito.admin_create_user(
            UserPoolId=pool_id, Username=name, MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": f"{name}@example.com"}],
        )  # fmt: skip
    for group, precedence in (("admins", 1), ("staff", 5), ("empty", 9), ("big", 20)):
        cognito.create_group(
            UserPoolId=pool_id, GroupName=group, Precedence=precedence,
            Description=f"the {group}",
        )  # fmt: skip
    for group, user in (("admins", "alice"), ("admins", "bob"), ("staff", "alice")):
        cognito.admin_add_user_to_group(UserPoolId=pool_id, GroupName=group, Username=user)
    for i in range(BIG):
        cognito.admin_add_user_to_group(
            UserPoolId=pool_id, GroupName="big", Username=f"bulk{i:02d}"
        )
    return pool_id


@pytest.fixture(scope="module")
def gt(setup, gpool):
    """Schema gt: groups, a writable members table and a read-only one, on gpool."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(conn, "groups_server", gpool, setup.endpoint)
        conn.execute("CREATE SCHEMA gt")
        conn.execute(
            "CREATE FOREIGN TABLE gt.groups (group_name text, description text, "
            "precedence int, role_arn text, created_at timestamptz, updated_at timestamptz) "
            "SERVER groups_server OPTIONS (object 'groups')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE gt.members (group_name text, username text, "
            "membership text, email text, sub uuid) "
            "SERVER groups_server OPTIONS (object 'group_members', writable 'true')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE gt.members_ro (group_name text, username text) "
            "SERVER groups_server OPTIONS (object 'group_members')"
        )
        conn.execute("CREATE TABLE gt.local_log (note text)")
    return gpool


def members(cognito, pool_id, group) -> set[str]:
    pages = cognito.get_paginator("list_users_in_group").paginate(
        UserPoolId=pool_id, GroupName=group
    )
    return {u["Username"] for page in pages for u in page["Users"]}


def rows(db, sql, params=None):
    return db.execute(sql, params).fetchall()


# -- reading -----------------------------------------------------------------------------


def test_groups_table(db, gt):
    with counting(db):
        got = rows(db, "SELECT group_name, description, precedence FROM gt.groups ORDER BY 1")
        assert requests_of(db) == [1]
    assert got == [
        ("admins", "the admins", 1),
        ("big", "the big", 20),
        ("empty", "the empty", 9),
        ("staff", "the staff", 5),
    ]
    with counting(db):
        assert rows(db, "SELECT precedence FROM gt.groups WHERE group_name = 'staff'") == [(5,)]
        assert rows(db, "SELECT 1 FROM gt.groups WHERE group_name = 'nope'") == []
        assert requests_of(db) == [1, 1]  # GetGroup each
    created = rows(db, "SELECT created_at <= now() FROM gt.groups WHERE group_name = 'big'")
    assert created == [(True,)]


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
def test_member_access_paths_and_their_requests(db, gt, where, expected, requests):
    with counting(db):
        got = set(rows(db, f"SELECT group_name, username FROM gt.members WHERE {where}"))
        assert requests_of(db) == requests
    if expected is not None:
        assert got == expected


def test_user_columns_cost_one_record_lookup_on_the_user_path(db, gt):
    with counting(db):
        got = rows(db, "SELECT group_name, email FROM gt.members WHERE username = 'bob'")
        assert requests_of(db) == [2]
        assert got == [("admins", "bob@example.com")]
        rows(db, "SELECT email FROM gt.members WHERE group_name = 'admins'")
        assert requests_of(db) == [1]  # ListUsersInGroup brings the attributes


def test_a_group_scan_pages_through_every_member(db, gt):
    with counting(db):
        got = rows(db, "SELECT count(*) FROM gt.members WHERE group_name = 'big'")
        assert requests_of(db) == [2]
    assert got == [(BIG,)]


def test_explain_names_the_cognito_calls(db, gt):
    def plan(where):
        return "\n".join(r[0] for r in rows(db, f"EXPLAIN SELECT * FROM gt.members WHERE {where}"))

    assert "AdminListGroupsForUser for 1 user(s), page size 60" in plan("username = 'x'")
    assert "then the record of each one in a group" in plan("username = 'x'")
    assert "ListUsersInGroup for 1 group(s)" in plan("group_name = 'x'")
    assert "ListGroups, then ListUsersInGroup for every group" in plan("true")
    verbose = rows(db, "EXPLAIN VERBOSE SELECT * FROM gt.groups")
    assert f"Cognito: region us-east-1, user pool {gt}" in "\n".join(r[0] for r in verbose)


def test_a_join_reads_one_user_per_outer_row(db, gt):
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
def test_refused_writes_say_why(db, gt, sql, message):
    with pytest.raises(psycopg.Error) as caught:
        db.execute(sql)
    assert message in caught.value.diag.message_primary
    assert "Error in python" not in str(caught.value)


def test_the_users_table_is_read_only(db, setup):
    db.execute(
        "CREATE FOREIGN TABLE cognito.grp_users_ro (username text) "
        "SERVER cognito_server OPTIONS (object 'users')"
    )
    with pytest.raises(psycopg.Error, match="cognito_fdw tables of users are read-only"):
        db.execute("DELETE FROM cognito.grp_users_ro")


# -- writing at COMMIT -------------------------------------------------------------------


def test_insert_and_delete_reach_cognito_at_commit(db, gt, cognito):
    with counting(db):
        with db.transaction():
            db.execute("INSERT INTO gt.members (group_name, username) VALUES ('staff', 'carol')")
            # Visible in the transaction, not yet in Cognito.
            assert ("staff", "carol") in rows(db, "SELECT group_name, username FROM gt.members")
            assert "carol" not in members(cognito, gt, "staff")
        # At COMMIT: nothing to look up (the SELECT saw staff), then AdminAddUserToGroup.
        assert requests_of(db)[-1] == 1
    assert "carol" in members(cognito, gt, "staff")

    db.execute("DELETE FROM gt.members WHERE group_name = 'staff' AND username = 'carol'")
    assert "carol" not in members(cognito, gt, "staff")


def test_insert_returning_gives_the_membership_key(db, gt, cognito):
    with db.transaction():
        got = rows(
            db,
            "INSERT INTO gt.members (group_name, username) VALUES ('empty', 'erin') "
            "RETURNING membership",
        )
        assert got == [('["empty", "erin"]',)]
        db.execute("DELETE FROM gt.members WHERE membership = %s", (got[0][0],))
    assert members(cognito, gt, "empty") == set()


def test_rollback_sends_nothing(db, gt, cognito):
    before = members(cognito, gt, "admins")
    with counting(db):
        db.execute("BEGIN")
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('admins', 'dave')")
        db.execute("DELETE FROM gt.members WHERE group_name = 'admins' AND username = 'bob'")
        db.execute("ROLLBACK")
        assert requests_of(db) == [1]  # only the DELETE's scan
    assert members(cognito, gt, "admins") == before


def test_rollback_to_savepoint_drops_the_changes_since_it(db, gt, cognito):
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
    assert "dave" not in members(cognito, gt, "staff")
    db.execute("COMMIT")
    assert members(cognito, gt, "staff") == {"bob"}
    # Put staff back as it was.
    db.execute("INSERT INTO gt.members (group_name, username) VALUES ('staff', 'alice')")
    db.execute("DELETE FROM gt.members WHERE group_name = 'staff' AND username = 'bob'")
    assert members(cognito, gt, "staff") == {"alice"}


def test_a_row_inserted_and_deleted_in_one_transaction_sends_nothing(db, gt, cognito):
    with counting(db):
        with db.transaction():
            db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', 'dave')")
            db.execute("DELETE FROM gt.members WHERE group_name = 'empty' AND username = 'dave'")
        assert requests_of(db) == [1, 0]  # the DELETE's scan; nothing at COMMIT
    assert members(cognito, gt, "empty") == set()


def test_adding_an_existing_member_is_quiet_and_sends_no_write(db, gt, cognito):
    with counting(db):
        with db.transaction():
            db.execute("INSERT INTO gt.members (group_name, username) VALUES ('admins', 'alice')")
        assert requests_of(db) == [1]  # alice's groups: already a member
    assert members(cognito, gt, "admins") == {"alice", "bob"}


def test_a_failing_commit_aborts_undoes_and_names_the_failure(db, gt, cognito):
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
        f"failed: group 'no-such-group' does not exist in user pool {gt} "
        "(ResourceNotFoundException); the transaction is rolled back"
    )
    assert "the transaction is rolled back" in diag.message_primary
    assert "NOT undone" not in diag.message_primary
    assert "Create the group in Cognito first" in diag.message_hint
    assert "undone in Cognito: the 2 change(s)" in diag.message_detail
    assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert rows(db, "SELECT * FROM gt.local_log") == []
    assert members(cognito, gt, "empty") == set()
    assert members(cognito, gt, "admins") == {"alice", "bob"}


def test_an_unknown_user_fails_at_commit_with_its_name(db, gt, cognito):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('staff', 'ghost')")
    assert caught.value.diag.message_primary.startswith(
        "cannot add user 'ghost' to group 'staff' at COMMIT: Cognito AdminAddUserToGroup "
        "failed: user 'ghost' does not exist"
    )
    assert members(cognito, gt, "staff") == {"alice"}


def test_delete_by_group_removes_every_member(db, gt, cognito):
    for user in ("carol", "dave"):
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', %s)", (user,))
    with counting(db):
        deleted = db.execute("DELETE FROM gt.members WHERE group_name = 'empty'").rowcount
        assert requests_of(db) == [1, 2]  # the scan, then two removals at COMMIT
    assert deleted == 2
    assert members(cognito, gt, "empty") == set()


def test_changes_survive_the_table_being_altered_in_the_transaction(db, gt, cognito):
    # ALTER makes Multicorn drop the wrapper instance holding the change and make another.
    with db.transaction():
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', 'erin')")
        db.execute("ALTER FOREIGN TABLE gt.members OPTIONS (ADD read_timeout '20')")
        assert rows(db, "SELECT username FROM gt.members WHERE group_name = 'empty'") == []
    assert members(cognito, gt, "empty") == {"erin"}
    db.execute("ALTER FOREIGN TABLE gt.members OPTIONS (DROP read_timeout)")
    db.execute("DELETE FROM gt.members WHERE group_name = 'empty'")
    assert members(cognito, gt, "empty") == set()


def test_two_tables_commit_together_and_are_undone_together(db, gt, cognito):
    db.execute(
        "CREATE FOREIGN TABLE gt.members2 (group_name text, username text, membership text) "
        "SERVER groups_server OPTIONS (object 'group_members', writable 'true')"
    )
    db.execute("BEGIN")
    db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', 'dave')")
    db.execute("INSERT INTO gt.members2 (group_name, username) VALUES ('nope', 'dave')")
    with pytest.raises(psycopg.Error, match="cannot add user 'dave' to group 'nope'"):
        db.execute("COMMIT")
    assert members(cognito, gt, "empty") == set()
    with db.transaction():
        db.execute("INSERT INTO gt.members (group_name, username) VALUES ('empty', 'dave')")
        db.execute("INSERT INTO gt.members2 (group_name, username) VALUES ('staff', 'dave')")
    assert members(cognito, gt, "empty") == {"dave"}
    assert "dave" in members(cognito, gt, "staff")
    db.execute("DELETE FROM gt.members2 WHERE username = 'dave'")
    assert groups_of_dave(cognito, gt) == set()


def groups_of_dave(cognito, pool_id) -> set[str]:
    found = cognito.admin_list_groups_for_user(UserPoolId=pool_id, Username="dave")["Groups"]
    return {g["GroupName"] for g in found}
