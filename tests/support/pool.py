"""The tests' pools: the shared pool of 150 deterministic users that exercise every column
kind, and the groups pool (five named users, 70 more in one group, four groups)."""

from __future__ import annotations

import dataclasses

POOL_REGION = "us-east-1"
USERS = 150  # three ListUsers pages of 60
GIVEN = ["Zoë", "José", "Łukasz", "Åsa", "李", "Ñandú", "Müller", "O'Brien", "Anna"]
TENANTS = ["acme", "globex", "初期"]


@dataclasses.dataclass
class TestPool:
    pool_id: str
    users: list  # as ListUsers returns them


def user_attributes(i: int) -> list[dict]:
    attrs = [
        {"Name": "given_name", "Value": GIVEN[i % len(GIVEN)]},
        {"Name": "family_name", "Value": f"Family{i:03d}"},
        {"Name": "custom:tenant", "Value": TENANTS[i % len(TENANTS)]},
    ]
    if i % 7:
        attrs.append({"Name": "email", "Value": f"user{i:03d}@example.com"})
        attrs.append({"Name": "email_verified", "Value": "true" if i % 2 else "false"})
    if i % 3 == 0:
        attrs.append({"Name": "phone_number", "Value": f"+1555{i:07d}"})
    if i % 2 == 0:
        attrs.append({"Name": "custom:age", "Value": str(18 + i % 60)})
        attrs.append({"Name": "custom:beta", "Value": "true" if i % 4 == 0 else "false"})
    return attrs


def seed_test_pool(cognito) -> TestPool:
    pool_id = cognito.create_user_pool(
        PoolName="cognito-fdw-tests",
        Schema=[
            {"Name": "tenant", "AttributeDataType": "String", "Mutable": True},
            {"Name": "age", "AttributeDataType": "Number", "Mutable": True},
            {"Name": "beta", "AttributeDataType": "Boolean", "Mutable": True},
        ],
    )["UserPool"]["Id"]
    for i in range(1, USERS + 1):
        username = f"user{i:03d}"
        cognito.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            UserAttributes=user_attributes(i),
            MessageAction="SUPPRESS",
        )
        if i % 10 == 0:
            cognito.admin_disable_user(UserPoolId=pool_id, Username=username)
    users = []
    for page in cognito.get_paginator("list_users").paginate(UserPoolId=pool_id):
        users.extend(page["Users"])
    return TestPool(pool_id, users)


#: The groups pool: these users, plus bulk00.. (BIG of them), all members of group 'big'.
GROUP_USERS = ["alice", "bob", "carol", "dave", "erin"]
BIG = 70  # two ListUsersInGroup pages
#: (group, precedence); each group's description is "the <group>".
GROUPS = (("admins", 1), ("staff", 5), ("empty", 9), ("big", 20))
MEMBERSHIPS = (("admins", "alice"), ("admins", "bob"), ("staff", "alice"))


def seed_groups_pool(cognito) -> str:
    """A new pool with :data:`GROUP_USERS`, :data:`GROUPS` and their members; its id."""
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-groups")["UserPool"]["Id"]
    for name in GROUP_USERS + [f"bulk{i:02d}" for i in range(BIG)]:
        cognito.admin_create_user(
            UserPoolId=pool_id, Username=name, MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": f"{name}@example.com"}],
        )  # fmt: skip
    for group, precedence in GROUPS:
        cognito.create_group(
            UserPoolId=pool_id, GroupName=group, Precedence=precedence,
            Description=f"the {group}",
        )  # fmt: skip
    memberships = [*MEMBERSHIPS, *(("big", f"bulk{i:02d}") for i in range(BIG))]
    for group, user in memberships:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, GroupName=group, Username=user)
    return pool_id
