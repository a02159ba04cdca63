"""The tests' pools and users, put into moto by the product's seeder
(:func:`cognito_fdw.tools.seed.create_users`, which the benchmark uses too): the shared pool
of 150 deterministic users that exercise every column kind, and the groups pool (five named
users, 70 more in one group, four groups)."""

from __future__ import annotations

import dataclasses

from cognito_fdw.tools.demousers import FORCE_CHANGE_PASSWORD, DemoUser
from cognito_fdw.tools.seed import create_users

POOL_REGION = "us-east-1"
USERS = 150  # three ListUsers pages of 60
GIVEN = ["Zoë", "José", "Łukasz", "Åsa", "李", "Ñandú", "Müller", "O'Brien", "Anna"]
TENANTS = ["acme", "globex", "初期"]


def new_user(username: str, attributes: dict | None = None, enabled: bool = True) -> DemoUser:
    """A user as AdminCreateUser makes one (``FORCE_CHANGE_PASSWORD``), in no group."""
    return DemoUser(username, attributes or {}, FORCE_CHANGE_PASSWORD, enabled, ())


@dataclasses.dataclass
class TestPool:
    pool_id: str
    users: list  # as ListUsers returns them


def pool_user(i: int) -> DemoUser:
    """User ``i`` (1-based) of the shared pool: no email when i % 7 == 0, a phone number when
    i % 3 == 0, age and beta when even, disabled when i % 10 == 0."""
    attributes = {
        "given_name": GIVEN[i % len(GIVEN)],
        "family_name": f"Family{i:03d}",
        "custom:tenant": TENANTS[i % len(TENANTS)],
    }
    if i % 7:
        attributes["email"] = f"user{i:03d}@example.com"
        attributes["email_verified"] = "true" if i % 2 else "false"
    if i % 3 == 0:
        attributes["phone_number"] = f"+1555{i:07d}"
    if i % 2 == 0:
        attributes["custom:age"] = str(18 + i % 60)
        attributes["custom:beta"] = "true" if i % 4 == 0 else "false"
    return new_user(f"user{i:03d}", attributes, enabled=i % 10 != 0)


def seed_test_pool(cognito) -> TestPool:
    """A new pool (custom attributes tenant, age, beta) with users 1..:data:`USERS`."""
    pool_id = cognito.create_user_pool(
        PoolName="cognito-fdw-tests",
        Schema=[
            {"Name": "tenant", "AttributeDataType": "String", "Mutable": True},
            {"Name": "age", "AttributeDataType": "Number", "Mutable": True},
            {"Name": "beta", "AttributeDataType": "Boolean", "Mutable": True},
        ],
    )["UserPool"]["Id"]
    create_users(cognito, pool_id, (pool_user(i) for i in range(1, USERS + 1)))
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
    names = GROUP_USERS + [f"bulk{i:02d}" for i in range(BIG)]
    create_users(cognito, pool_id, (new_user(n, {"email": f"{n}@example.com"}) for n in names))
    for group, precedence in GROUPS:
        cognito.create_group(
            UserPoolId=pool_id, GroupName=group, Precedence=precedence,
            Description=f"the {group}",
        )  # fmt: skip
    memberships = [*MEMBERSHIPS, *(("big", f"bulk{i:02d}") for i in range(BIG))]
    for group, username in memberships:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, GroupName=group, Username=username)
    return pool_id
