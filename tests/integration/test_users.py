"""The users table inside a real PostgreSQL with real Multicorn2, against moto over HTTP."""

from __future__ import annotations

import math
import time
from datetime import timezone

import psycopg
import pytest

from ..support.accounting import counting, requests_of
from ..support.postgres import create_server, create_table, error_of

COLUMNS = """
    username text, email text, status text, enabled boolean,
    created_at timestamp, updated_at timestamp, attributes jsonb, sub uuid, email_verified boolean,
    phone_number varchar(20), given_name text, family_name text, mfa_options jsonb,
    tenant text, age integer, age_n numeric OPTIONS (attribute 'custom:age'), beta boolean
"""


@pytest.fixture(scope="module")
def users(setup):
    """cognito.users with the Supabase columns and one of every other kind."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE FOREIGN TABLE cognito.users ({COLUMNS}) SERVER cognito_server "
            "OPTIONS (object 'users')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE cognito.users_tz (username text, created_at timestamptz, "
            "updated_at timestamptz) SERVER cognito_server OPTIONS (object 'users')"
        )
        conn.execute("CREATE TABLE local_users AS SELECT * FROM cognito.users")
    return setup


def attrs(user) -> dict:
    return {a["Name"]: a["Value"] for a in user["Attributes"]}


def test_select_star_is_every_user_with_every_value(users, db, pool):
    with counting(db):
        rows = db.execute("SELECT * FROM cognito.users ORDER BY username").fetchall()
        assert requests_of(db) == [math.ceil(len(pool.users) / 60)]
    names = [d.name for d in db.execute("SELECT * FROM cognito.users LIMIT 0").description]
    by_name = {u["Username"]: u for u in pool.users}
    assert [r[0] for r in rows] == sorted(by_name)
    for row in rows:
        got = dict(zip(names, row))
        user = by_name[got["username"]]
        a = attrs(user)
        assert got["email"] == a.get("email")
        assert got["status"] == user["UserStatus"] and got["enabled"] == user["Enabled"]
        utc = user["UserCreateDate"].astimezone(timezone.utc).replace(tzinfo=None)
        assert got["created_at"] == utc
        assert got["attributes"] == a
        assert str(got["sub"]) == a["sub"]
        assert (
            got["email_verified"]
            == {"true": True, "false": False, None: None}[a.get("email_verified")]
        )
        assert got["phone_number"] == a.get("phone_number")
        assert got["given_name"] == a["given_name"]
        assert got["tenant"] == a["custom:tenant"]
        assert got["age"] == (int(a["custom:age"]) if "custom:age" in a else None)
        assert got["beta"] == {"true": True, "false": False, None: None}[a.get("custom:beta")]
        assert got["mfa_options"] == user.get("MFAOptions")


def test_count_star(users, db, pool):
    assert db.execute("SELECT count(*) FROM cognito.users").fetchone()[0] == len(pool.users)


def test_non_ascii_and_missing_attributes(users, db):
    rows = db.execute(
        "SELECT given_name, email, phone_number, age FROM cognito.users "
        "WHERE username IN ('user005', 'user007', 'user013', 'user014')"
        " ORDER BY username"
    ).fetchall()
    assert rows == [
        ("Ñandú", "user005@example.com", None, None),
        ("O'Brien", None, None, None),
        ("李", "user013@example.com", None, None),
        ("Ñandú", None, None, 32),
    ]


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham"])
def test_timestamps_are_right_in_any_session_zone(users, db, pool, zone):
    # The server process runs in Asia/Kolkata; botocore's tzlocal() must not leak into values.
    db.execute(f"SET TimeZone = '{zone}'")
    row = db.execute(
        "SELECT u.created_at, t.created_at, t.updated_at FROM cognito.users u "
        "JOIN cognito.users_tz t USING (username) WHERE username = 'user001'"
    ).fetchone()
    user = next(u for u in pool.users if u["Username"] == "user001")
    assert row[0] == user["UserCreateDate"].astimezone(timezone.utc).replace(tzinfo=None)
    assert row[1] == user["UserCreateDate"]  # aware datetimes compare as instants
    assert row[2] == user["UserLastModifiedDate"]
    db.execute("RESET TimeZone")


QUERIES = [
    "SELECT username FROM {t} WHERE email LIKE 'user01%' ORDER BY 1",
    "SELECT username FROM {t} WHERE email LIKE 'user0_5@%' ORDER BY 1",
    "SELECT username, enabled FROM {t} WHERE NOT enabled ORDER BY 1",
    "SELECT username FROM {t} WHERE tenant = '初期' AND age > 40 ORDER BY 1",
    "SELECT username FROM {t} WHERE email IS NULL ORDER BY 1",
    "SELECT username FROM {t} WHERE username IN ('user001', 'user150', 'nobody') ORDER BY 1",
    "SELECT tenant, count(*), max(age) FROM {t} GROUP BY tenant ORDER BY 1",
    "SELECT username FROM {t} ORDER BY given_name DESC, username LIMIT 7 OFFSET 3",
    "SELECT count(*) FROM (SELECT * FROM {t} LIMIT 70) s",
    "SELECT count(*) FROM (SELECT * FROM {t} OFFSET 145) s",
    "SELECT count(*) FROM (SELECT * FROM {t} LIMIT 5 OFFSET 148) s",
    "SELECT count(*) FROM (SELECT * FROM {t} LIMIT 0) s",
    "SELECT l.username FROM (VALUES ('user002'), ('user077'), ('ghost')) l(username) "
    "JOIN {t} u ON u.username = l.username ORDER BY 1",
    "SELECT l.username, u.email FROM local_users l LEFT JOIN {t} u ON u.sub = l.sub "
    "WHERE l.username < 'user010' ORDER BY 1",
    "SELECT username FROM {t} WHERE sub IN (SELECT sub FROM local_users WHERE age = 20) ORDER BY 1",
]


@pytest.mark.parametrize("query", QUERIES)
def test_queries_answer_exactly_like_a_local_table(users, db, query):
    assert (
        db.execute(query.format(t="cognito.users")).fetchall()
        == db.execute(query.format(t="local_users")).fetchall()
    )


@pytest.mark.parametrize("limit, requests", [(10, 1), (60, 1), (61, 2), (0, 0)])
def test_limit_is_pushed_and_pages_stop(users, db, limit, requests):
    with counting(db):
        rows = db.execute(f"SELECT username FROM cognito.users LIMIT {limit}").fetchall()
        assert requests_of(db) == ([requests] if requests else [0])
    assert len(rows) == limit


def test_users_are_read_only(users, db):
    for statement in (
        "INSERT INTO cognito.users (username) VALUES ('x')",
        "DELETE FROM cognito.users",
        "UPDATE cognito.users SET email = 'x'",
    ):
        with pytest.raises(psycopg.Error) as caught:
            db.execute(statement)
        assert "read-only" in str(caught.value)
        assert "Error in python" not in str(caught.value)


def _server(db, name, pool_id, endpoint, keys=True, **options):
    db.execute(f"DROP SERVER IF EXISTS {name} CASCADE")
    create_server(db, name, pool_id, endpoint, keys, **options)


def test_error_unknown_pool(users, db, pool):
    _server(db, "err_pool", "us-east-1_Nope123", users.endpoint)
    create_table(db, "err_pool_users", "username text", "err_pool", object="users")
    err = error_of(db, "SELECT * FROM err_pool_users")
    assert "ResourceNotFoundException" in err.diag.message_primary
    assert "us-east-1_Nope123" in err.diag.message_primary
    assert "user_pool_id" in err.diag.message_hint


def test_error_options_named_with_value_and_fix(users, db, pool):
    _server(db, "err_opts", pool.pool_id, users.endpoint, region="eu-west-1", conect_timeout=3)
    create_table(db, "err_opts_users", "username text", "err_opts", object="users")
    err = error_of(db, "SELECT * FROM err_opts_users")
    assert "conect_timeout (did you mean connect_timeout?)" in err.diag.message_primary
    db.execute("ALTER SERVER err_opts OPTIONS (DROP conect_timeout)")
    err = error_of(db, "SELECT * FROM err_opts_users")
    assert "region" in err.diag.message_primary and "us-east-1" in err.diag.message_hint
    db.execute("ALTER SERVER err_opts OPTIONS (DROP region)")
    db.execute("DROP FOREIGN TABLE err_opts_users")
    create_table(db, "err_opts_users", "username text", "err_opts", object="roles")
    err = error_of(db, "SELECT * FROM err_opts_users")
    assert "'roles'" in err.diag.message_primary and "users" in err.diag.message_hint


def test_error_columns_all_named_once(users, db, pool):
    columns = "username text, shoe_size int, email int, tenant boolean"
    create_table(db, "err_cols", columns, object="users")
    err = error_of(db, "SELECT username FROM err_cols")
    for name in ("shoe_size", "email", "tenant"):
        assert f"{name}:" in err.diag.message_primary
    assert "custom attributes of this pool: age, beta, tenant" in err.diag.message_hint


def test_error_unreachable_endpoint_is_quick_and_names_it(users, db, pool):
    from cognito_fdw.tools.devstack import free_port

    port = free_port()  # nothing listens there
    _server(db, "err_net", pool.pool_id, f"http://127.0.0.1:{port}", max_attempts=2)
    create_table(db, "err_net_users", "username text", "err_net", object="users")
    started = time.monotonic()
    err = error_of(db, "SELECT * FROM err_net_users")
    assert time.monotonic() - started < 30  # bounded, not a hang (a refused connection)
    assert f"127.0.0.1:{port}" in err.diag.message_primary
    assert "endpoint_url" in err.diag.message_hint


def test_credentials_come_from_the_user_mapping_of_the_current_role(users, db, pool):
    _server(db, "cred_srv", pool.pool_id, users.endpoint, keys=False)
    create_table(db, "cred_users", "username text", "cred_srv", object="users")
    db.execute("GRANT USAGE ON FOREIGN SERVER cred_srv TO PUBLIC")
    db.execute("GRANT SELECT ON cred_users TO PUBLIC")
    db.execute("DROP ROLE IF EXISTS app_reader")
    db.execute("CREATE ROLE app_reader")
    # No mapping and no credential chain on the server: a clear error, not a hang.
    err = error_of(db, "SELECT count(*) FROM cred_users")
    assert "no usable AWS credentials" in err.diag.message_primary
    assert "user mapping" in err.diag.message_hint
    db.execute(
        "CREATE USER MAPPING FOR app_reader SERVER cred_srv OPTIONS ("
        "aws_access_key_id 'AKIDREADER', aws_secret_access_key 'reader-secret')"
    )
    db.execute("SET ROLE app_reader")
    try:
        assert db.execute("SELECT count(*) FROM cred_users").fetchone()[0] == len(pool.users)
    finally:
        db.execute("RESET ROLE")


def test_explain_shows_the_request_without_secrets(users, db, pool):
    plan = "\n".join(
        r[0] for r in db.execute("EXPLAIN VERBOSE SELECT * FROM cognito.users LIMIT 10").fetchall()
    )
    assert "ListUsers" in plan and pool.pool_id in plan
    assert "testing-secret" not in plan and "AKIDTESTING" not in plan


def test_statement_timeout_cancels_between_rows_and_the_session_lives_on(users, db):
    db.execute("SET statement_timeout = '1ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        db.execute("SELECT count(*) FROM cognito.users a, cognito.users b, cognito.users c")
    db.execute("RESET statement_timeout")
    assert db.execute("SELECT count(*) FROM cognito.users").fetchone()[0] == 150


def test_the_users_table_is_read_only(db, setup):
    db.execute(
        "CREATE FOREIGN TABLE cognito.grp_users_ro (username text) "
        "SERVER cognito_server OPTIONS (object 'users')"
    )
    with pytest.raises(psycopg.Error, match="cognito_fdw tables of users are read-only"):
        db.execute("DELETE FROM cognito.grp_users_ro")
