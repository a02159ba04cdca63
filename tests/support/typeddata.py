"""A pool whose every column kind holds an edge: NULL (a missing attribute), empty strings,
NaN and infinities, the largest bigint, very long values, characters outside the BMP,
quotes, backslashes and LIKE wildcards in names; groups and memberships alike.

``seed_typed_pool`` fills a pool; ``TABLES`` declares the foreign tables over it, one per
object, with a column of every type the wrapper reads.
"""

from __future__ import annotations

from cognito_fdw.tools.seed import create_users

from .pool import new_user

LONG = "x" * 2048  # Cognito's longest attribute value
CUSTOM = [("score", "Number"), ("ratio", "Number"), ("level", "Number"), ("beta", "Boolean"),
          ("seen", "DateTime"), ("note", "String")]  # fmt: skip

USERS = {
    "ann": {"email": "ann@example.com", "given_name": "Ann", "family_name": "O'Brien",
            "name": "", "nickname": LONG, "phone_number": "+15550000001",
            "custom:score": "NaN", "custom:ratio": "1.5", "custom:level": "42",
            "custom:beta": "true", "custom:seen": "2024-01-02T03:04:05Z",
            "custom:note": "😀𝔘 outside the BMP"},
    "Bea": {"email": "", "given_name": "bea", "family_name": "", "custom:score": "Infinity",
            "custom:ratio": "-Infinity", "custom:level": "-9007199254740993",
            "custom:beta": "false", "custom:seen": "infinity", "custom:note": ""},
    "cid": {"given_name": "ZOË", "name": "李", "custom:score": "-Infinity",
            "custom:ratio": "NaN", "custom:level": "0", "custom:seen": "-infinity"},
    "dan": {"email": "DAN@Example.com", "given_name": "Dan", "custom:score": "1e300",
            "custom:ratio": "1e-300", "custom:level": "9223372036854775807",
            "custom:seen": "1999-12-31T23:59:59.999999+05:30"},
    "eve😀": {"email": "eve@example.org", "given_name": "😀", "custom:score": "-0",
             "custom:ratio": "0", "custom:note": "a\\b%c_d"},
    "o'b\"q\\z": {"email": "quote@example.com", "given_name": "O'B\"Q\\Z",
                  "preferred_username": "o'b"},
    "50%_x": {"email": "50%@x.example", "given_name": "50%_x", "custom:note": LONG},
    "zed": {"email": "zed@example.com", "given_name": "Zed", "custom:beta": "true"},
    "李四": {"email": "li@example.cn", "name": "李四", "custom:level": "7"},
}  # fmt: skip
DISABLED = {"zed", "cid"}
GROUPS = {
    "admins": ({"Description": "😀" * 100, "Precedence": 0}, ["ann", "Bea", "eve😀"]),
    "g-2": ({"Description": "", "Precedence": 2147483647}, ["cid", "ann"]),
    "李": ({}, ["李四"]),
    "50%_g": ({"Description": "o'b\"q\\z"}, []),
}

USER_COLUMNS = {
    "username": "text", "sub": "uuid", "email": "varchar(300)", "given_name": "text",
    "family_name": "text", "name": "text", "nickname": "text", "phone_number": "text",
    "preferred_username": "text", "status": "text", "enabled": "boolean",
    "created_at": "timestamptz", "updated_at": "timestamp", "email_verified": "boolean",
    "score": "numeric", "ratio": "float8", "level": "bigint", "beta": "boolean",
    "seen": "timestamptz", "note": "text", "attributes": "jsonb", "mfa_options": "jsonb",
}  # fmt: skip
GROUP_COLUMNS = {
    "group_name": "text", "description": "text", "precedence": "int", "role_arn": "text",
    "created_at": "timestamptz", "updated_at": "timestamp",
}  # fmt: skip
MEMBER_COLUMNS = {
    "group_name": "text", "username": "text", "membership": "text", "email": "text",
    "given_name": "text", "enabled": "boolean", "level": "bigint", "created_at": "date",
}  # fmt: skip
TABLES = {
    "users": ("users", USER_COLUMNS),
    "groups": ("groups", GROUP_COLUMNS),
    "members": ("group_members", MEMBER_COLUMNS),
}


def seed_typed_pool(cognito) -> str:
    """A new pool holding USERS and GROUPS; its id."""
    pool_id = cognito.create_user_pool(
        PoolName="cognito-fdw-typed",
        Schema=[{"Name": n, "AttributeDataType": t, "Mutable": True} for n, t in CUSTOM],
    )["UserPool"]["Id"]
    users = [new_user(name, attrs, enabled=name not in DISABLED) for name, attrs in USERS.items()]
    create_users(cognito, pool_id, users)
    for group, (fields, members) in GROUPS.items():
        cognito.create_group(UserPoolId=pool_id, GroupName=group, **fields)
        for username in members:
            cognito.admin_add_user_to_group(UserPoolId=pool_id, GroupName=group, Username=username)
    return pool_id


def declare(table: str, server: str, schema: str) -> list[str]:
    """The DDL of the foreign table ``schema.table`` and of its local copy ``local_table``."""
    obj, columns = TABLES[table]
    spec = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    return [
        f"CREATE FOREIGN TABLE {schema}.{table} ({spec}) SERVER {server} OPTIONS (object '{obj}')",
        f"CREATE TABLE {schema}.local_{table} AS SELECT * FROM {schema}.{table}",
        f"ANALYZE {schema}.local_{table}",
    ]
