"""The test pool: 150 deterministic users that exercise every column kind."""

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
