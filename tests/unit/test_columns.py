import json
from datetime import datetime, timedelta, timezone

import pytest
from dateutil.tz import tzlocal

from cognito_fdw.columns import resolve_columns
from cognito_fdw.errors import ColumnError
from cognito_fdw.rows import user_row

from ..support.multicorn import column

CUSTOM = {
    "custom:tenant": "String",
    "custom:age": "Number",
    "custom:beta": "Boolean",
    "custom:since": "DateTime",
}


def resolve(*cols, custom=None):
    calls = []

    def load():
        calls.append(1)
        return CUSTOM if custom is None else custom

    resolved = resolve_columns({c.column_name: c for c in cols}, load)
    return resolved, calls


IST = timezone(timedelta(hours=5, minutes=30))
USER = {
    "Username": "zoë",
    "Attributes": [
        {"Name": "sub", "Value": "6a6c7bd5-0338-4b64-81c3-c544cb1842d3"},
        {"Name": "email", "Value": "zoe@example.com"},
        {"Name": "email_verified", "Value": "true"},
        {"Name": "custom:tenant", "Value": "初期"},
        {"Name": "custom:age", "Value": "42"},
        {"Name": "custom:beta", "Value": "false"},
        {"Name": "updated_at", "Value": "1700000000"},
        {"Name": "identities", "Value": '[{"providerName": "Google"}]'},
    ],
    "UserCreateDate": datetime(2024, 1, 2, 8, 34, 5, 678000, tzinfo=IST),
    "UserLastModifiedDate": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    "Enabled": False,
    "UserStatus": "CONFIRMED",
    "MFAOptions": [{"DeliveryMedium": "SMS", "AttributeName": "phone_number"}],
}


def row(*cols, user=USER):
    resolved, _ = resolve(*cols)
    return user_row(user, resolved)


def test_supabase_columns_need_no_describe_user_pool():
    cols = [
        column("username", "text"),
        column("email", "text"),
        column("status", "text"),
        column("enabled", "boolean"),
        column("created_at", "timestamp without time zone"),
        column("updated_at", "timestamp without time zone"),
        column("attributes", "jsonb"),
    ]
    resolved, calls = resolve(*cols)
    assert not calls
    values = user_row(USER, resolved)
    assert values["username"] == "zoë" and values["status"] == "CONFIRMED"
    assert values["enabled"] == "false"
    # A timestamp holds UTC wall time, whatever zone botocore attached.
    assert values["created_at"] == "2024-01-02T03:04:05.678000"
    assert values["updated_at"] == "2024-01-02T03:04:05"
    attrs = json.loads(values["attributes"])
    assert attrs["custom:tenant"] == "初期" and attrs["sub"].startswith("6a6c")


def test_timestamptz_is_rendered_as_the_instant_with_an_offset():
    values = row(column("created_at", "timestamp with time zone"))
    assert values["created_at"] == "2024-01-02T03:04:05.678000+00:00"


def test_tzlocal_datetimes_become_utc():
    local = datetime(2024, 6, 1, 12, 0, tzinfo=tzlocal())
    values = row(
        column("created_at", "timestamp without time zone"), user={**USER, "UserCreateDate": local}
    )
    expected = local.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    assert values["created_at"] == expected


def test_standard_attributes_by_name_and_their_types():
    values = row(
        column("sub", "uuid"),
        column("email_verified", "boolean"),
        column("phone_number", "character varying(20)"),
        column("identities", "jsonb"),
        column("mfa_options", "jsonb"),
    )
    assert values["sub"] == "6a6c7bd5-0338-4b64-81c3-c544cb1842d3"
    assert values["email_verified"] == "true"
    assert values["phone_number"] is None
    assert json.loads(values["identities"]) == [{"providerName": "Google"}]
    assert json.loads(values["mfa_options"])[0]["DeliveryMedium"] == "SMS"


def test_standard_updated_at_attribute_through_the_attribute_option():
    values = row(
        column("attr_updated", "timestamp with time zone", {"attribute": "updated_at"}),
        column("attr_epoch", "bigint", {"attribute": "updated_at"}),
    )
    assert values["attr_updated"] == "2023-11-14T22:13:20+00:00"
    assert values["attr_epoch"] == "1700000000"


def test_custom_attributes_by_bare_name_and_by_option():
    cols = [
        column("tenant", "text"),
        column("age", "integer"),
        column("beta", "boolean"),
        column("t2", "text", {"attribute": "custom:tenant"}),
    ]
    resolved, calls = resolve(*cols)
    assert len(calls) == 1  # one DescribeUserPool for all of them
    values = user_row(USER, resolved)
    assert values == {"tenant": "初期", "age": "42", "beta": "false", "t2": "初期"}


def test_every_offending_column_is_named_in_one_error():
    with pytest.raises(ColumnError) as caught:
        resolve(
            column("foo", "text"),
            column("email", "integer"),
            column("enabled", "uuid"),
            column("x", "text", {"attribute": "custom:nope"}),
            column("sub", "text[]"),
            column("email_verified", "text", {"attr": "x"}),
        )
    message = caught.value.message
    for name in ("foo:", "email:", "enabled:", "x:", "sub:", "email_verified:"):
        assert name in message
    assert "tenant" in caught.value.hint and "username" in caught.value.hint


@pytest.mark.parametrize(
    "name, type_name",
    [
        ("email", "uuid"),
        ("created_at", "integer"),
        ("attributes", "integer"),
        ("tenant", "boolean"),
        ("age", "timestamp with time zone"),
        ("enabled", "numeric"),
    ],
)
def test_types_that_cannot_hold_the_value_are_refused(name, type_name):
    with pytest.raises(ColumnError, match=name):
        resolve(column(name, type_name))


@pytest.mark.parametrize("type_name", ["text", "character varying(3)", "citext", "email_domain"])
def test_text_and_unknown_types_take_strings(type_name):
    resolve(column("email", type_name))


def test_integer_columns_get_integral_numbers_without_a_fraction():
    user = {**USER, "Attributes": [{"Name": "custom:age", "Value": "42.0"}]}
    assert row(column("age", "integer"), user=user) == {"age": "42"}
    assert row(column("age", "numeric"), user=user) == {"age": "42.0"}


def test_missing_attributes_are_null_and_attributes_is_an_empty_object():
    user = {"Username": "bare", "Enabled": True, "UserStatus": "CONFIRMED"}
    values = row(
        column("email", "text"),
        column("attributes", "jsonb"),
        column("created_at", "timestamp"),
        column("mfa_options", "jsonb"),
        user=user,
    )
    assert values == {"email": None, "attributes": "{}", "created_at": None, "mfa_options": None}


def test_admin_get_user_records_use_user_attributes():
    user = {"Username": "u", "UserAttributes": [{"Name": "email", "Value": "u@x.org"}]}
    assert row(column("email", "text"), user=user) == {"email": "u@x.org"}


def test_a_non_boolean_value_in_a_boolean_attribute_is_null():
    user = {**USER, "Attributes": [{"Name": "email_verified", "Value": "maybe"}]}
    assert row(column("email_verified", "boolean"), user=user) == {"email_verified": None}


def test_the_attribute_option_names_attributes_not_built_in_columns():
    with pytest.raises(ColumnError) as caught:
        resolve(column("signup", "timestamptz", {"attribute": "created_at"}))
    assert "'created_at' is a built-in column, not an attribute: name the column created_at" in (
        caught.value.message
    )
    assert "takes any of these but the built-in columns attributes, created_at" in (
        caught.value.hint
    )


def test_a_time_goes_only_into_a_time_type_but_a_string_into_any():
    with pytest.raises(ColumnError, match="created_at: type interval cannot hold a timestamp"):
        resolve(column("created_at", "interval"))
    with pytest.raises(ColumnError, match="age: type interval cannot hold a number"):
        resolve(column("age", "interval"))
    resolve(column("tenant", "interval"), column("status", "user_status_enum"))


@pytest.mark.parametrize(
    "type_name, value, expected",
    [("character varying(3)", "abc", "abc"), ("varchar(3)", "ab   ", "ab "),
     ("character(3)", "abc  ", "abc"), ("character varying(5)", "zoë初", "zoë初"),
     ("character varying(3)", "enterprise", None), ("character(2)", "abc", None)],
)  # fmt: skip
def test_length_types_hold_what_postgresql_would_store(type_name, value, expected):
    user = {**USER, "Attributes": [{"Name": "custom:tenant", "Value": value}]}
    if expected is not None:
        assert row(column("tenant", type_name), user=user) == {"tenant": expected}
        return
    with pytest.raises(ColumnError) as caught:
        row(column("tenant", type_name), user=user)
    assert caught.value.message == (
        f"cognito_fdw: column tenant of user 'zoë': value too long for type {type_name}"
    )
    assert caught.value.detail == f"The value is {len(value)} characters long."
    assert "SQLSTATE 22001" in caught.value.hint


@pytest.mark.parametrize(
    "type_name, value, problem",
    [("integer", "3000000000", 'value "3000000000" is out of range for type integer'),
     ("smallint", "-32769", 'value "-32769" is out of range for type smallint'),
     ("bigint", "NaN", 'invalid input syntax for type bigint: "NaN"'),
     ("integer", "2.5", 'invalid input syntax for type integer: "2.5"')],
)  # fmt: skip
def test_an_integer_column_refuses_what_postgresql_would_naming_column_and_user(
    type_name, value, problem
):
    user = {**USER, "Attributes": [{"Name": "custom:age", "Value": value}]}
    with pytest.raises(ColumnError) as caught:
        row(column("age", type_name), user=user)
    assert caught.value.message == f"cognito_fdw: column age of user 'zoë': {problem}"
    assert row(column("age", "bigint"), user={**user, "Attributes": []}) == {"age": None}


def test_a_nul_is_shown_as_the_replacement_character_in_text_and_json():
    from cognito_fdw.values import JSON, JSON_TEXT, renderer, without_nul

    assert without_nul({"n\x00": ["a\x00", 1, None]}) == {"n\ufffd": ["a\ufffd", 1, None]}
    assert renderer(JSON_TEXT, "jsonb")('[{"a": "x\\u0000y"}]') == '[{"a": "x\ufffdy"}]'
    assert renderer(JSON_TEXT, "jsonb")('["\\\\u0000"]') == '["\\\\u0000"]'  # no NUL: kept
    assert "\\u0000" not in renderer(JSON, "jsonb")(without_nul({"n": "a\x00"}))
