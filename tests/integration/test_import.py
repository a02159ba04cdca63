"""Tier 2: IMPORT FOREIGN SCHEMA on the shared pool (custom tenant, age, beta)."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.server


def columns(db, schema, table) -> dict:
    return dict(
        db.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass "
            "AND a.attnum > 0 ORDER BY a.attnum",
            (schema, table),
        ).fetchall()
    )


def table_options(db, schema, table) -> list:
    return db.execute(
        "SELECT ftoptions FROM pg_foreign_table "
        "WHERE ftrelid = format('%%I.%%I', %s::text, %s::text)::regclass",
        (schema, table),
    ).fetchone()[0]


def test_import_creates_a_table_per_object_with_typed_custom_attributes(db, pool, cognito):
    db.execute("CREATE SCHEMA imp_all")
    db.execute(
        "IMPORT FOREIGN SCHEMA cognito FROM SERVER cognito_server INTO imp_all "
        "OPTIONS (writable 'true')"
    )
    tables = db.execute(
        "SELECT foreign_table_name FROM information_schema.foreign_tables "
        "WHERE foreign_table_schema = 'imp_all' ORDER BY 1"
    ).fetchall()
    assert tables == [("group_members",), ("groups",), ("user_pool",), ("users",)]

    users = columns(db, "imp_all", "users")
    assert users["tenant"] == "text"
    assert users["age"] == "numeric"
    assert users["beta"] == "boolean"
    assert users["sub"] == "text"
    assert users["email_verified"] == "boolean"
    assert users["created_at"] == "timestamp with time zone"
    options = dict(
        db.execute(
            "SELECT attname, attfdwoptions FROM pg_attribute "
            "WHERE attrelid = 'imp_all.users'::regclass AND attfdwoptions IS NOT NULL"
        ).fetchall()
    )
    assert options["age"] == ["attribute=custom:age"]
    assert table_options(db, "imp_all", "group_members") == [
        "object=group_members",
        "writable=true",
    ]
    assert table_options(db, "imp_all", "groups") == ["object=groups"]
    assert table_options(db, "imp_all", "user_pool") == ["object=user_pool"]
    assert columns(db, "imp_all", "user_pool")["schema_attributes"] == "jsonb"

    # The imported tables read: the typed custom attributes come back typed.
    seed = {u["Username"]: u for u in pool.users}
    row = db.execute(
        "SELECT tenant, age, beta, sub::text FROM imp_all.users WHERE username = 'user004'"
    ).fetchone()
    attrs = {a["Name"]: a["Value"] for a in seed["user004"]["Attributes"]}
    assert row == (attrs["custom:tenant"], int(attrs["custom:age"]), True, attrs["sub"])
    # Other modules may have made groups in the shared pool: compare with what Cognito lists.
    groups = cognito.list_groups(UserPoolId=pool.pool_id)["Groups"]
    members = sum(
        len(page["Users"])
        for g in groups
        for page in cognito.get_paginator("list_users_in_group").paginate(
            UserPoolId=pool.pool_id, GroupName=g["GroupName"]
        )
    )
    assert db.execute("SELECT count(*) FROM imp_all.groups").fetchone() == (len(groups),)
    assert db.execute("SELECT count(*) FROM imp_all.group_members").fetchone() == (members,)
    described = cognito.describe_user_pool(UserPoolId=pool.pool_id)["UserPool"]
    assert db.execute("SELECT id, name FROM imp_all.user_pool").fetchall() == [
        (pool.pool_id, described["Name"])
    ]


def test_limit_to_and_except(db, setup):
    db.execute("CREATE SCHEMA imp_some")
    db.execute(
        "IMPORT FOREIGN SCHEMA cognito LIMIT TO (groups) FROM SERVER cognito_server INTO imp_some"
    )
    db.execute(
        "IMPORT FOREIGN SCHEMA cognito EXCEPT (groups, users, user_pool) "
        "FROM SERVER cognito_server INTO imp_some"
    )
    db.execute(
        "IMPORT FOREIGN SCHEMA cognito LIMIT TO (user_pool) "
        "FROM SERVER cognito_server INTO imp_some"
    )
    tables = db.execute(
        "SELECT foreign_table_name FROM information_schema.foreign_tables "
        "WHERE foreign_table_schema = 'imp_some' ORDER BY 1"
    ).fetchall()
    assert tables == [("group_members",), ("groups",), ("user_pool",)]
    assert table_options(db, "imp_some", "group_members") == [
        "object=group_members",
        "writable=false",
    ]  # read-only unless asked


def test_a_bad_import_option_is_refused_and_nothing_is_created(db, setup):
    db.execute("CREATE SCHEMA imp_bad")
    with pytest.raises(psycopg.Error) as caught:
        db.execute(
            "IMPORT FOREIGN SCHEMA cognito FROM SERVER cognito_server INTO imp_bad "
            "OPTIONS (writeable 'true')"
        )
    assert "unknown IMPORT FOREIGN SCHEMA option: writeable" in str(caught.value)
    assert "Error in python" not in str(caught.value)
    count = db.execute(
        "SELECT count(*) FROM information_schema.foreign_tables "
        "WHERE foreign_table_schema = 'imp_bad'"
    ).fetchone()
    assert count == (0,)
