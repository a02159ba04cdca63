"""``object 'user_pool'``: the pool itself, one row from DescribeUserPool.

Every scan is one DescribeUserPool request (quota: 15 per second per account), whatever
the quals (PostgreSQL checks them on the one row), so the row is always current, unlike
the description a connection caches for ``describe_ttl`` for the planner.  Read-only.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import plans
from ..aws.client import Stats
from ..columns import Field
from ..quals import qual_text
from ..rows import record_row
from ..values import INSTANT, JSON, NUMBER, STRING
from .table import COLUMN_WIDTH, Table

# The columns of user_pool: each reads a field of DescribeUserPool's UserPool.
POOL_COLUMNS = {
    "id": Field("Id", STRING, "Id, the user pool id"),
    "name": Field("Name", STRING, "Name"),
    "tier": Field("UserPoolTier", STRING, "UserPoolTier, the feature plan (`LITE`, "
                  "`ESSENTIALS`, `PLUS`; NULL where the endpoint does not say)"),
    "estimated_users": Field("EstimatedNumberOfUsers", NUMBER,
                             "EstimatedNumberOfUsers (integer)", "integer"),
    "mfa_configuration": Field("MfaConfiguration", STRING,
                               "MfaConfiguration (`OFF`, `ON`, `OPTIONAL`)"),
    "username_attributes": Field("UsernameAttributes", JSON,
                                 "UsernameAttributes, a JSON array (`[\"email\"]`: users "
                                 "sign in with an email; NULL when not set)"),
    "alias_attributes": Field("AliasAttributes", JSON,
                              "AliasAttributes, a JSON array (NULL when not set)"),
    "created_at": Field("CreationDate", INSTANT, "CreationDate (timestamptz)"),
    "updated_at": Field("LastModifiedDate", INSTANT, "LastModifiedDate (timestamptz)"),
    "schema_attributes": Field("SchemaAttributes", JSON,
                               "SchemaAttributes, the attribute schema: a JSON array of "
                               "`{Name, AttributeDataType, Mutable, Required, ...}`"),
}  # fmt: skip


class UserPool(Table):
    """The ``user_pool`` table: one row, read-only."""

    object = "user_pool"
    fields = POOL_COLUMNS
    read_only_hint = (
        "Change the pool's settings in Cognito itself (console, AWS CLI or UpdateUserPool); "
        "the table shows them at the next query."
    )

    def __init__(self, options, pool, fdw_columns, progress=None):
        super().__init__(options, pool, fdw_columns, progress)
        self.columns = self.record_columns()

    def rel_size(self, quals, columns) -> tuple[int, int, int]:
        return 1, len(columns) * COLUMN_WIDTH, 0

    def explain(self, quals, columns, limit=None, offset=None) -> list[str]:
        refused = tuple(plans.Refusal(qual_text(qual), "one-row") for qual in quals)
        return ["Cognito: DescribeUserPool, 1 request", *plans.condition_lines(None, refused)]

    def rows(self, quals, columns, stats: Stats, limit=None, offset=None) -> Iterator[dict]:
        stats.rows += 1
        yield record_row(self.pool.user_pool(stats), self.columns)
