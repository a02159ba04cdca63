"""Tier 2: sql/sync.sql end to end, on a pool and server of its own.

Users are created in Cognito, synced into app.users, roles granted and revoked in the
database with the group memberships following at COMMIT, and drift reconciled.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from cognito_fdw.tools.seed import create_users

from ..support.accounting import counting, requests_of
from ..support.planted import superuser_run
from ..support.pool import new_user
from ..support.postgres import SCRIPTS, Database, create_server, psql, role_dsn
from ..support.reliability import record

pytestmark = pytest.mark.server

SYNC_SQL = SCRIPTS / "sync.sql"
SCHEMA = "sync_cognito"  # not the default, so the -v cognito_schema path is what runs
PEOPLE = {"ann": "+15550000001", "ben": "+15550000002", "cat": None, "dan": None}


@pytest.fixture(scope="module")
def spool(cognito):
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-sync")["UserPool"]["Id"]
    people = []
    for name, phone in PEOPLE.items():
        attributes = {"email": f"{name}@example.com"}
        if phone:
            attributes["phone_number"] = phone
        people.append(new_user(name, attributes))
    create_users(cognito, pool_id, people)
    for group in ("admin", "editor"):
        cognito.create_group(UserPoolId=pool_id, GroupName=group)
    return pool_id


@pytest.fixture(scope="module")
def app(setup, spool):
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(conn, "sync_server", spool, setup.endpoint)
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(
            f"IMPORT FOREIGN SCHEMA cognito FROM SERVER sync_server INTO {SCHEMA} "
            "OPTIONS (writable 'true')"
        )
    for _ in range(2):  # the file can be run again over an existing install
        loaded = psql(setup, "-v", f"cognito_schema={SCHEMA}", "-f", str(SYNC_SQL))
        assert loaded.returncode == 0, loaded.stderr
    return spool


def groups_of(cognito, pool_id, user) -> set[str]:
    found = cognito.admin_list_groups_for_user(UserPoolId=pool_id, Username=user)["Groups"]
    return {g["GroupName"] for g in found}


def grant(db, user, role):
    db.execute(
        "INSERT INTO app.user_roles SELECT u.id, r.id FROM app.users u, app.roles r "
        "WHERE u.username = %s AND r.name = %s",
        (user, role),
    )


def revoke(db, user, role):
    db.execute(
        "DELETE FROM app.user_roles ur USING app.users u, app.roles r "
        "WHERE ur.user_id = u.id AND ur.role_id = r.id AND u.username = %s AND r.name = %s",
        (user, role),
    )


def test_sync_sql_refuses_a_schema_without_the_foreign_tables(setup):
    result = psql(setup, "-v", "cognito_schema=no_such_schema", "-f", str(SYNC_SQL))
    assert result.returncode != 0
    assert "not found in schema no_such_schema" in result.stderr
    assert "ERROR:  sync.sql: foreign tables users and group_members not found" in result.stderr
    assert "HINT:  Run IMPORT FOREIGN SCHEMA" in result.stderr


def test_the_sync_flow(db, app, cognito):
    # Users created in Cognito arrive in app.users, in one ListUsers request.
    with counting(db):
        assert db.execute("SELECT * FROM app.sync_users()").fetchone() == (4, 0, 0, 0)
        assert requests_of(db) == [1]
    got = db.execute("SELECT username, email::text, phone FROM app.users ORDER BY 1").fetchall()
    assert got == [(name, f"{name}@example.com", phone) for name, phone in PEOPLE.items()]
    subs = dict(db.execute("SELECT username, sub::text FROM app.users").fetchall())
    ben = cognito.admin_get_user(UserPoolId=app, Username="ben")["UserAttributes"]
    assert subs["ben"] == {a["Name"]: a["Value"] for a in ben}["sub"]

    # A changed email, and a change of case only (citext would call that equal), are synced.
    for user, email in (("ben", "ben@new.example.com"), ("cat", "Cat@Example.com")):
        cognito.admin_update_user_attributes(
            UserPoolId=app, Username=user, UserAttributes=[{"Name": "email", "Value": email}]
        )
    assert db.execute("SELECT * FROM app.sync_users()").fetchone() == (0, 2, 2, 0)
    emails = dict(db.execute("SELECT username, email::text FROM app.users").fetchall())
    assert emails["ben"] == "ben@new.example.com"
    assert emails["cat"] == "Cat@Example.com"
    assert db.execute("SELECT * FROM app.sync_users()").fetchone() == (0, 0, 4, 0)

    db.execute("INSERT INTO app.roles (name) VALUES ('admin'), ('editor')")

    # A grant rolled back never reaches Cognito.
    with pytest.raises(psycopg.errors.DivisionByZero), db.transaction():
        grant(db, "ann", "admin")
        db.execute("SELECT 1/0")
    assert groups_of(cognito, app, "ann") == set()

    # A grant reaches Cognito at COMMIT, not before.
    with db.transaction():
        grant(db, "ann", "admin")
        grant(db, "ann", "editor")
        assert groups_of(cognito, app, "ann") == set()
    assert groups_of(cognito, app, "ann") == {"admin", "editor"}

    # A revoke, and a user's deletion (cascading to user_roles), remove the memberships.
    revoke(db, "ann", "editor")
    assert groups_of(cognito, app, "ann") == {"admin"}
    grant(db, "dan", "editor")
    assert groups_of(cognito, app, "dan") == {"editor"}
    db.execute("DELETE FROM app.users WHERE username = 'dan'")
    assert groups_of(cognito, app, "dan") == set()
    assert db.execute("SELECT * FROM app.sync_users()").fetchone() == (1, 0, 3, 0)  # dan again


def test_a_grant_of_a_role_without_a_group_fails_at_commit(db, app, cognito):
    db.execute("SELECT app.sync_users()")
    db.execute("INSERT INTO app.roles (name) VALUES ('auditor')")
    with pytest.raises(psycopg.Error) as caught:
        grant(db, "cat", "auditor")
    assert "cannot add user 'cat' to group 'auditor' at COMMIT" in str(caught.value)
    granted = db.execute(
        "SELECT count(*) FROM app.user_roles ur JOIN app.roles r ON r.id = ur.role_id "
        "WHERE r.name = 'auditor'"
    ).fetchone()
    assert granted == (0,)
    db.execute("DELETE FROM app.roles WHERE name = 'auditor'")


def test_reconcile_reports_and_repairs_drift_both_ways(db, app, cognito):
    db.execute("SELECT app.sync_users()")
    db.execute("INSERT INTO app.roles (name) VALUES ('admin'), ('editor') ON CONFLICT DO NOTHING")
    grant(db, "ben", "editor")
    # Drift made behind the database's back.
    cognito.admin_remove_user_from_group(UserPoolId=app, GroupName="editor", Username="ben")
    cognito.admin_add_user_to_group(UserPoolId=app, GroupName="admin", Username="cat")

    with counting(db):
        report = db.execute("SELECT * FROM app.reconcile_roles(repair => false)").fetchall()
        assert requests_of(db) == [2]  # one ListUsersInGroup per role
    assert report == [("remove", "admin", "cat"), ("add", "editor", "ben")]
    assert groups_of(cognito, app, "cat") == {"admin"}  # only reported

    assert db.execute("SELECT * FROM app.reconcile_roles()").fetchall() == report
    assert groups_of(cognito, app, "cat") == set()
    assert groups_of(cognito, app, "ben") == {"editor"}
    assert db.execute("SELECT * FROM app.reconcile_roles()").fetchall() == []


def sub_of(cognito, pool_id, username) -> str:
    found = cognito.admin_get_user(UserPoolId=pool_id, Username=username)["UserAttributes"]
    return {a["Name"]: a["Value"] for a in found}["sub"]


def test_a_username_reused_by_a_new_sub_never_stalls_the_sync(db, app, cognito):
    """Sign up as NAME, wait for a sync, delete the account, sign up as NAME again: the new
    sub's username is one app.users still holds for the old sub.  The mirror follows
    Cognito: the old row gives the username up (keeping its id and roles), the new sub gets
    a row of its own, and neither sync form fails."""
    db.execute("SELECT * FROM app.sync_users()")
    db.execute("INSERT INTO app.roles (name) VALUES ('editor') ON CONFLICT DO NOTHING")
    for name in ("eve", "fay"):
        create_users(cognito, app, [new_user(name, {"email": f"{name}@example.com"})])
    db.execute("SELECT * FROM app.sync_users()")
    grant(db, "eve", "editor")
    assert groups_of(cognito, app, "eve") == {"editor"}
    old = {n: sub_of(cognito, app, n) for n in ("eve", "fay")}
    for name in ("eve", "fay"):
        cognito.admin_delete_user(UserPoolId=app, Username=name)
        create_users(cognito, app, [new_user(name, {"email": f"new-{name}@example.com"})])
    new = {n: sub_of(cognito, app, n) for n in ("eve", "fay")}
    assert old["eve"] != new["eve"] and old["fay"] != new["fay"]

    # The one-shot sync, and the part-by-part one (fay's new sub), both go through.
    first = db.execute("SELECT * FROM app.sync_users()").fetchone()
    db.execute("CALL app.sync_users_in_parts()")
    failed = db.execute("SELECT part, error FROM app.sync_parts WHERE error IS NOT NULL")
    assert failed.fetchall() == []
    # The first sight of a sub through app.user_for_sub takes a reused name too.
    db.execute("DELETE FROM app.users WHERE sub = %s", (new["fay"],))
    row = db.execute("SELECT username FROM app.user_for_sub(%s)", (new["fay"],)).fetchone()
    assert row == ("fay",)

    rows = dict(db.execute(
        "SELECT sub::text, username FROM app.users WHERE sub = ANY (%s::uuid[])",
        ([*old.values(), *new.values()],),
    ).fetchall())  # fmt: skip
    assert rows == {old["eve"]: None, old["fay"]: None, new["eve"]: "eve", new["fay"]: "fay"}
    assert first[0] == 2  # the two new subs inserted
    # The old row keeps its role in the database, and it is not the new sub's.
    roles = db.execute(
        "SELECT u.sub::text FROM app.user_roles ur JOIN app.users u ON u.id = ur.user_id "
        "JOIN app.roles r ON r.id = ur.role_id WHERE r.name = 'editor'"
    ).fetchall()
    assert (old["eve"],) in roles and (new["eve"],) not in roles
    assert groups_of(cognito, app, "eve") == set()  # Cognito dropped the deleted user's
    # A role granted to the old row fails clearly; one revoked from it sends nothing.
    with pytest.raises(psycopg.Error, match="has no username") as caught:
        db.execute(
            "INSERT INTO app.user_roles SELECT u.id, r.id FROM app.users u, app.roles r "
            "WHERE u.sub = %s AND r.name = 'admin'",
            (old["fay"],),
        )
    with counting(db):
        db.execute("DELETE FROM app.user_roles ur USING app.users u "
                   "WHERE ur.user_id = u.id AND u.sub = %s", (old["eve"],))  # fmt: skip
        assert requests_of(db) == []
    assert ("add", "editor", None) not in db.execute("SELECT * FROM app.reconcile_roles(false)")
    record(
        "attack",
        "a self-service user signs up as NAME, is synced, deletes the account and signs up as "
        "NAME again (a new sub with a username app.users holds)",
        "both sync forms go through; the old row gives the username up (roles kept, sent "
        f"nowhere); granting it a role: {caught.value.diag.message_primary}"[:200],
    )
    for name in ("eve", "fay"):
        cognito.admin_delete_user(UserPoolId=app, Username=name)
    db.execute("DELETE FROM app.users WHERE email LIKE '%%eve@%%' OR email LIKE '%%fay@%%'")


# -- run by a superuser where other roles can create objects -----------------------------

# The test's own statements qualify their operators: the public-first path is for what
# sync.sql's functions and procedure do, not for these.
SUPERUSER_CALLS = """
SELECT * FROM app.sync_users();
SELECT * FROM app.sync_users('a');
CALL app.sync_users_in_parts();
CALL app.sync_users_in_parts(2);
INSERT INTO app.roles (name) VALUES ('admin') ON CONFLICT DO NOTHING;
INSERT INTO app.user_roles SELECT u.id, r.id FROM app.users u, app.roles r
 WHERE u.username OPERATOR(pg_catalog.=) 'ben' AND r.name OPERATOR(pg_catalog.=) 'admin';
SELECT * FROM app.reconcile_roles(repair => false);
DELETE FROM app.user_roles;
SELECT app.user_for_sub(sub) FROM app.users WHERE username OPERATOR(pg_catalog.=) 'ann';
DELETE FROM app.users WHERE username OPERATOR(pg_catalog.=) 'ann';
SELECT app.user_for_sub(%(ann)L::pg_catalog.uuid);
DELETE FROM app.roles;
"""


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
@pytest.mark.parametrize("path", ["default", "public first"])
def test_a_superuser_running_sync_sql_calls_no_planted_function(setup, spool, cognito, path):
    """Functions, operators and types named like everything sync.sql calls, planted in
    public by a role with CREATE there (PostgreSQL 14 and older grant it to PUBLIC) and in
    the superuser's own pg_temp, are never called: not by the script, nor by its functions
    and procedure (called from a session of their own), with the superuser's search_path as
    it comes or with public first.  The procedure declared its variables with bare type
    names, and a domain named text ran its CHECK as the caller."""
    name = f"planted_{path.split()[0]}"
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = Database(setup, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION multicorn")
            create_server(conn, "planted_server", spool, setup.endpoint)
            conn.execute(f"CREATE SCHEMA {SCHEMA}")
            conn.execute(f"IMPORT FOREIGN SCHEMA cognito FROM SERVER planted_server INTO {SCHEMA} "
                         "OPTIONS (writable 'true')")  # fmt: skip
        ann = cognito.admin_get_user(UserPoolId=spool, Username="ann")["UserAttributes"]
        ann_sub = {a["Name"]: a["Value"] for a in ann}["sub"]
        calls = SUPERUSER_CALLS.replace("%(ann)L", f"'{ann_sub}'")
        run = superuser_run(
            target, SYNC_SQL, calls, path == "public first", "-v", f"cognito_schema={SCHEMA}"
        )
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            users = conn.execute("SELECT count(*) FROM app.users").fetchone()[0]
        record(
            "attack",
            f"sync.sql and its functions run by a superuser ({path} search_path) with "
            f"{run.planted} functions/operators planted in public and pg_temp",
            f"none called ({run.calls} calls; the control reached {run.control})",
        )
        assert run.planted > 1000 and run.control >= 1
        assert run.calls == 0, run.called()
        assert users == len(PEOPLE)
    finally:
        with psycopg.connect(setup.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
def test_sync_sql_refuses_a_citext_another_role_created_first(setup, spool):
    """citext is a trusted extension: a database's owner (no superuser) may create it first,
    in a schema of its own, and as its owner drop it (CASCADE takes app.users.email with
    it) or put functions of its own in that schema.  The script refuses."""
    name = f"citext_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    target = Database(setup, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION multicorn")
            create_server(conn, "citext_server", spool, setup.endpoint)
            conn.execute(f"CREATE SCHEMA {SCHEMA}")
            conn.execute(f"IMPORT FOREIGN SCHEMA cognito FROM SERVER citext_server INTO {SCHEMA} "
                         "OPTIONS (writable 'true')")  # fmt: skip
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as owner:
            owner.execute("CREATE SCHEMA mine")
            owner.execute("CREATE EXTENSION citext SCHEMA mine")
        done = psql(target, "-v", f"cognito_schema={SCHEMA}", "-f", str(SYNC_SQL))
        record(
            "attack",
            "a database owner creates citext (trusted) in its own schema before sync.sql",
            "refused: " + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:140],
        )
        assert done.returncode != 0
        # Its schema is the role's too, which the script refuses first.
        assert "extension citext is, or would be created, in a schema" in done.stderr
    finally:
        with psycopg.connect(setup.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
def test_sync_sql_refuses_foreign_tables_another_role_controls(setup, spool, cognito):
    """The schema sync.sql copies users and group_members from is the database owner's (no
    superuser, may own Multicorn servers; it made the schema before the DBA's CREATE SCHEMA
    IF NOT EXISTS): as the schema's owner it drops the DBA's foreign tables and imports its
    own, from a server of its own whose endpoint and pool it chose.  sync.sql, run by a
    superuser, copied them: app.users would mirror that role's answers (who has which sub)
    and every grant in app.user_roles would go to its server.  The script refuses."""
    name = f"borrow_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    own_pool = cognito.create_user_pool(PoolName="cognito-fdw-sync-attacker")["UserPool"]["Id"]
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    target = Database(setup, name)
    try:
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as owner:
            owner.execute(f"CREATE SCHEMA {SCHEMA}")
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION multicorn")
            conn.execute(f"GRANT USAGE ON FOREIGN DATA WRAPPER multicorn TO {role}")
            create_server(conn, "dba_server", spool, setup.endpoint)
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            conn.execute(f"IMPORT FOREIGN SCHEMA cognito FROM SERVER dba_server INTO {SCHEMA} "
                         "OPTIONS (writable 'true')")  # fmt: skip
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as owner:
            create_server(owner, "own_server", own_pool, setup.endpoint)
            owner.execute(f"DROP FOREIGN TABLE {SCHEMA}.users, {SCHEMA}.group_members")
            owner.execute(
                "IMPORT FOREIGN SCHEMA cognito LIMIT TO (users, group_members) "
                f"FROM SERVER own_server INTO {SCHEMA} OPTIONS (writable 'true')"
            )
        done = psql(target, "-v", f"cognito_schema={SCHEMA}", "-f", str(SYNC_SQL))
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            servers = conn.execute(
                "SELECT s.srvname FROM pg_foreign_table t JOIN pg_foreign_server s"
                " ON s.oid = t.ftserver JOIN pg_class c ON c.oid = t.ftrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app'"
            ).fetchall()
        record(
            "attack",
            "a database owner that made the cognito schema swaps in users and group_members "
            "on a server of its own before a superuser runs sync.sql",
            "refused: " + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:140],
        )
        assert servers == []
        assert done.returncode != 0
        assert "not a superuser's" in done.stderr and role in done.stderr
    finally:
        with psycopg.connect(setup.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")
        cognito.delete_user_pool(UserPoolId=own_pool)


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
def test_sync_sql_refusing_runs_no_operator_of_the_database_owner(setup):
    """A database's owner (no superuser) sets the database's search_path to ``public,
    pg_catalog`` (ALTER DATABASE ... SET, which every later session takes, a superuser's
    psql too), plants ``||(text, text)`` in public (its own on PostgreSQL 15) and makes
    the schema sync.sql copies from, with tables of its own.  sync.sql, run by a superuser,
    refuses them: the refusal ran before the script pinned its search_path and joined its
    message with ``||``, so the owner's operator ran as the superuser."""
    name = f"dbpath_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    target = Database(setup, name)
    try:
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as owner:
            owner.execute(f"ALTER DATABASE {name} SET search_path = public, pg_catalog")
            owner.execute("CREATE SEQUENCE public.ran_as_superuser")
            owner.execute("GRANT USAGE, UPDATE ON SEQUENCE public.ran_as_superuser TO PUBLIC")
            owner.execute(
                "CREATE FUNCTION public.cat(text, text) RETURNS text LANGUAGE plpgsql AS $f$"
                "BEGIN IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r"
                "          WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN"
                "  PERFORM pg_catalog.nextval('public.ran_as_superuser'); END IF;"
                " RETURN pg_catalog.textcat($1, $2); END$f$"
            )
            owner.execute(
                "CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = public.cat)"
            )
            owner.execute(f"CREATE SCHEMA {SCHEMA}")
            owner.execute(f"CREATE TABLE {SCHEMA}.users (id integer)")
            owner.execute(f"CREATE TABLE {SCHEMA}.group_members (id integer)")
        done = psql(target, "-v", f"cognito_schema={SCHEMA}", "-f", str(SYNC_SQL))
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            ran = conn.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.ran_as_superuser"
            ).fetchone()[0]
        record(
            "attack",
            "a database owner sets the database's search_path to public first, plants "
            "||(text, text) there and owns the tables sync.sql copies, before a superuser "
            "runs sync.sql",
            f"refused, the operator called {ran} times as the superuser: "
            + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:100],
        )
        assert done.returncode != 0
        assert "not a superuser's" in done.stderr and role in done.stderr
        assert ran == 0
    finally:
        with psycopg.connect(setup.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
def test_sync_sql_creates_citext_in_no_schema_another_role_owns(setup, spool):
    """A role with CREATE on the database (no superuser, not its owner) makes a schema named
    after the superuser that will run sync.sql: first in the default search_path ("$user",
    public), it is where CREATE EXTENSION puts citext.  As that schema's owner, DROP SCHEMA
    ... CASCADE then took citext and with it app.users.email, every user's address.  The
    script refuses before creating the extension there."""
    name = f"citextu_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        superuser = conn.execute("SELECT current_user").fetchone()[0]
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name}")
        conn.execute(f"GRANT CREATE ON DATABASE {name} TO {role}")
    target = Database(setup, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION multicorn")
            create_server(conn, "citext_server", spool, setup.endpoint)
            conn.execute(f"CREATE SCHEMA {SCHEMA}")
            conn.execute(f"IMPORT FOREIGN SCHEMA cognito FROM SERVER citext_server INTO {SCHEMA} "
                         "OPTIONS (writable 'true')")  # fmt: skip
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{superuser}"')
        done = psql(target, "-v", f"cognito_schema={SCHEMA}", "-f", str(SYNC_SQL))
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{superuser}" CASCADE')
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            email = conn.execute(
                "SELECT count(*) FROM pg_attribute WHERE attname = 'email' AND NOT attisdropped"
                " AND attrelid = to_regclass('app.users')"
            ).fetchone()[0]
            extensions = conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'citext'"
            ).fetchone()[0]
        record(
            "attack",
            "a role with CREATE on the database makes a schema named after the superuser "
            "(first in $user, public) before sync.sql, then DROP SCHEMA CASCADE",
            "refused: " + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:140],
        )
        assert done.returncode != 0, (email, extensions)
        assert "extension citext is, or would be created, in a schema" in done.stderr
        assert extensions == 0
    finally:
        with psycopg.connect(setup.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")
