"""The user_pool table's pure parts: one request, one row from the record, writes refused."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from cognito_fdw.aws.client import Stats
from cognito_fdw.errors import CognitoFdwError, ColumnError
from cognito_fdw.tables.user_pool import UserPool

from ..support.multicorn import column_definitions

RECORD = {
    "Id": "us-east-1_Abc",
    "Name": "app",
    "UserPoolTier": "PLUS",
    "EstimatedNumberOfUsers": 12,
    "UsernameAttributes": ["email"],
    "CreationDate": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    "SchemaAttributes": [{"Name": "sub", "Required": True}],
}


class FakePool:
    options = SimpleNamespace(region="us-east-1", user_pool_id="us-east-1_Abc")

    def __init__(self):
        self.calls = []

    def call(self, operation, stats=None, **params):
        self.calls.append(operation)
        stats.requests += 1
        return {"UserPool": RECORD}

    def user_pool(self, stats=None):
        return self.call("DescribeUserPool", stats)["UserPool"]


def table(**types):
    return UserPool(FakePool.options, FakePool(), column_definitions(**types))


def test_a_scan_is_one_describe_user_pool_and_one_row():
    pool_table = table(
        id="text", estimated_users="integer", username_attributes="jsonb",
        alias_attributes="jsonb", created_at="timestamp", schema_attributes="jsonb",
    )  # fmt: skip
    stats = Stats()
    rows = list(pool_table.rows([], [], stats))
    assert pool_table.pool.calls == ["DescribeUserPool"] and stats.requests == 1
    assert rows == [{
        "id": "us-east-1_Abc", "estimated_users": "12", "username_attributes": '["email"]',
        "alias_attributes": None, "created_at": "2024-01-02T03:04:05",
        "schema_attributes": '[{"Name": "sub", "Required": true}]',
    }]  # fmt: skip
    assert pool_table.explain([], ["id"]) == ["Cognito: DescribeUserPool, 1 request"]
    assert pool_table.where() == "Cognito: region us-east-1, user pool us-east-1_Abc"
    assert pool_table.rel_size([], ["id", "name"]) == (1, 48, 0)
    assert pool_table.path_keys() == [] and not pool_table.can_limit(1, 0)


def test_writes_are_refused():
    pool_table = table(name="text")
    for write in (
        pool_table.rowid_column,
        lambda: pool_table.insert({"name": "x"}),
        lambda: pool_table.update("x", {}),
        lambda: pool_table.delete("x"),
    ):
        with pytest.raises(CognitoFdwError, match="object 'user_pool' is read-only"):
            write()


def test_columns_it_does_not_have_are_named():
    with pytest.raises(ColumnError, match="users: not a column of user_pool"):
        table(name="text", users="integer")
