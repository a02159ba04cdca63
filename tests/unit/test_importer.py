"""IMPORT FOREIGN SCHEMA's definitions: one table per object, columns from the registries,
names that need no quoting."""

from __future__ import annotations

import pytest

from cognito_fdw.errors import OptionError
from cognito_fdw.tables.importer import column_name, table_definitions


@pytest.mark.parametrize(
    "attribute, expected",
    [
        ("custom:tenant", "tenant"),
        ("custom:TenantId", "tenant_id"),
        ("custom:order", "custom_order"),
        ("custom:email", "custom_email"),
        ("custom:2fa", "custom_2fa"),
        ("dev:custom:x-y z", "x_y_z"),
    ],
)
def test_imported_column_names_need_no_quoting(attribute, expected):
    assert column_name(attribute, {"email", "username"}) == expected


def test_import_definitions():
    tables = table_definitions(
        {"custom:tenant": "String", "custom:age": "Number", "custom:beta": "Boolean"},
        {"writable": "true"},
    )
    assert [t.name for t in tables] == ["users", "groups", "group_members", "user_pool"]
    users = {c.name: c for c in tables[0].columns}
    assert users["age"].type_name == "numeric"
    assert users["age"].options == {"attribute": "custom:age"}
    assert users["beta"].type_name == "boolean"
    assert users["sub"].type_name == "text"  # a join key: see importer._standard_type
    assert users["updated_at"].type_name == "timestamp with time zone"
    assert tables[2].options == {"object": "group_members", "writable": "true"}
    assert tables[3].options == {"object": "user_pool"}  # read-only: no writable
    pool = {c.name: c.type_name for c in tables[3].columns}
    assert pool["estimated_users"] == "integer" and pool["schema_attributes"] == "jsonb"
    for table in tables:  # keys are emitted unquoted by Multicorn: keep them lower case
        for key in [*table.options, *(k for c in table.columns for k in c.options)]:
            assert key.isidentifier() and key == key.lower()
    with pytest.raises(OptionError, match="unknown IMPORT FOREIGN SCHEMA option: prefix"):
        table_definitions({}, {"prefix": "x"})
    with pytest.raises(OptionError, match="invalid value for option writable"):
        table_definitions({}, {"writable": "yes"})
