"""Tier 2: object 'user_pool' on a real server: the row is DescribeUserPool's, read-only.

A pool of this module's own (server pool_server, schema up), set up with a feature tier,
sign-in attributes, MFA and a custom attribute, so each column has a value to compare.
"""

from __future__ import annotations

import json
from datetime import timezone

import psycopg
import pytest

from cognito_fdw.tools.seed import create_users

from ..support.accounting import counting, requests_of
from ..support.pool import new_user
from ..support.postgres import create_server, create_table, explain_text

pytestmark = pytest.mark.server

COLUMNS = (
    "id text, name text, tier text, estimated_users integer, mfa_configuration text, "
    "username_attributes jsonb, alias_attributes jsonb, created_at timestamptz, "
    "updated_at timestamptz, schema_attributes jsonb"
)


@pytest.fixture(scope="module")
def described(cognito):
    """The pool, with three users, as boto3's describe_user_pool returns it."""
    pool_id = cognito.create_user_pool(
        PoolName="cognito-fdw-pool-row",
        UserPoolTier="ESSENTIALS",
        UsernameAttributes=["email"],
        MfaConfiguration="OFF",
        Schema=[{"Name": "tenant", "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]["Id"]
    create_users(cognito, pool_id, (new_user(f"u{n}@example.com") for n in range(3)))
    return cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]


@pytest.fixture(scope="module")
def pool_table(setup, described):
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(conn, "pool_server", described["Id"], setup.endpoint)
        conn.execute("CREATE SCHEMA up")
        conn.execute(
            f"CREATE FOREIGN TABLE up.user_pool ({COLUMNS}) "
            "SERVER pool_server OPTIONS (object 'user_pool')"
        )
    return described


def test_the_row_is_what_describe_user_pool_returns(db, pool_table):
    db.execute("SET TimeZone = 'America/Los_Angeles'")  # instants must not depend on it
    row = db.execute("SELECT * FROM up.user_pool").fetchall()
    assert len(row) == 1
    (pool_id, name, tier, users, mfa, usernames, aliases, created, updated, schema) = row[0]
    assert (pool_id, name, tier, mfa) == (
        pool_table["Id"], pool_table["Name"], pool_table["UserPoolTier"],
        pool_table["MfaConfiguration"],
    )  # fmt: skip
    assert users == pool_table["EstimatedNumberOfUsers"] == 3
    assert usernames == pool_table["UsernameAttributes"] == ["email"]
    assert aliases == pool_table.get("AliasAttributes")  # not set: NULL
    assert created == pool_table["CreationDate"].astimezone(timezone.utc)
    assert updated == pool_table["LastModifiedDate"].astimezone(timezone.utc)
    assert schema == json.loads(json.dumps(pool_table["SchemaAttributes"], default=str))
    assert "custom:tenant" in {a["Name"] for a in schema}


def test_each_scan_is_one_request_and_explain_says_so(db, pool_table):
    plan = explain_text(db, "EXPLAIN SELECT name FROM up.user_pool")
    assert "Cognito: DescribeUserPool, 1 request" in plan
    verbose = explain_text(db, "EXPLAIN VERBOSE SELECT * FROM up.user_pool")
    assert f"Cognito: region us-east-1, user pool {pool_table['Id']}" in verbose
    with counting(db):
        got = db.execute("SELECT name FROM up.user_pool WHERE tier = 'ESSENTIALS'").fetchall()
        assert requests_of(db) == [1]
    assert got == [(pool_table["Name"],)]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO up.user_pool (name) VALUES ('x')",
        "UPDATE up.user_pool SET name = 'x'",
        "DELETE FROM up.user_pool",
    ],
)
def test_writes_are_refused_with_a_clear_error(db, pool_table, statement):
    with pytest.raises(psycopg.Error) as caught:
        db.execute(statement)
    error = caught.value.diag
    assert error.message_primary == "cognito_fdw object 'user_pool' is read-only"
    assert "UpdateUserPool" in error.message_hint


def test_a_column_it_does_not_have_is_named(db, pool_table):
    columns = "name text, users integer, tier boolean"
    create_table(db, "up.bad", columns, "pool_server", object="user_pool")
    with pytest.raises(psycopg.Error) as caught:
        db.execute("SELECT * FROM up.bad")
    message = caught.value.diag.message_primary
    assert "users: not a column of user_pool" in message
    assert "tier: type boolean cannot hold a string" in message
    assert "estimated_users" in caught.value.diag.message_hint
