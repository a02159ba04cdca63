"""A value from Cognito into a column's input text: what PostgreSQL would store, or refuse in
its own words, for each kind of value and family of column type."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from cognito_fdw.values import (
    BOOLEAN,
    DATETIME,
    EPOCH,
    INSTANT,
    JSON,
    JSON_TEXT,
    NUMBER,
    STRING,
    Unfit,
    family,
    renderer,
    type_problem,
)


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [("character varying(20)", "character varying"), ("NUMERIC(10,2)", "numeric"),
     ("text[]", "array"), ("timestamp with time zone", "timestamp with time zone")],
)  # fmt: skip
def test_a_type_names_family_drops_its_modifier(type_name, expected):
    assert family(type_name) == expected


def test_an_instant_is_utc_wall_time_in_timestamp_and_an_offset_in_timestamptz():
    # 12:00 in India is 06:30 UTC, whatever zone botocore gave the datetime.
    noon_in_india = datetime(2024, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert renderer(INSTANT, "timestamp")(noon_in_india) == "2024-03-01T06:30:00"
    assert renderer(INSTANT, "timestamptz")(noon_in_india) == "2024-03-01T06:30:00+00:00"


def test_the_epoch_attribute_is_an_instant_in_a_time_column_and_a_number_elsewhere():
    assert renderer(EPOCH, "timestamp")("86400") == "1970-01-02T00:00:00"
    assert renderer(EPOCH, "timestamp with time zone")("0") == "1970-01-01T00:00:00+00:00"
    assert renderer(EPOCH, "bigint")("86400") == "86400"
    # Not seconds, or past what a datetime holds: NULL rather than a failed scan.
    assert renderer(EPOCH, "timestamptz")("soon") is None
    assert renderer(EPOCH, "timestamptz")("1e20") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, "true"), (False, "false"), ("true", "true"), (" FALSE ", "false"), ("yes", None),
     ("", None)],
)  # fmt: skip
def test_a_boolean_is_true_false_or_null(value, expected):
    assert renderer(BOOLEAN, "boolean")(value) == expected


def test_an_integer_column_takes_integral_decimals_within_its_range():
    assert renderer(NUMBER, "integer")("12") == "12"
    assert renderer(NUMBER, "integer")("12.0") == "12"
    assert renderer(NUMBER, "smallint")("-32768") == "-32768"
    assert renderer(NUMBER, "bigint")("9223372036854775807") == "9223372036854775807"


@pytest.mark.parametrize(
    ("value", "type_name", "message"),
    [("12.5", "integer", 'invalid input syntax for type integer: "12.5"'),
     ("NaN", "integer", 'invalid input syntax for type integer: "NaN"'),
     ("twelve", "bigint", 'invalid input syntax for type bigint: "twelve"'),
     ("32768", "smallint", 'value "32768" is out of range for type smallint'),
     ("2147483648", "integer", 'value "2147483648" is out of range for type integer')],
)  # fmt: skip
def test_an_integer_column_refuses_what_postgresql_refuses_in_its_words(value, type_name, message):
    with pytest.raises(Unfit) as refused:
        renderer(NUMBER, type_name)(value)
    assert str(refused.value) == message


def test_a_number_keeps_its_text_in_numeric_and_text_columns():
    assert renderer(NUMBER, "numeric")("12.50") == "12.50"
    assert renderer(NUMBER, "text")("1e3") == "1e3"


def test_json_values_and_json_text():
    assert json.loads(renderer(JSON, "jsonb")({"é": [1, None]})) == {"é": [1, None]}
    assert "é" in renderer(JSON, "jsonb")({"é": 1})  # not escaped to \u00e9
    identities = '[{"providerName": "Google"}]'
    assert renderer(JSON_TEXT, "jsonb")(identities) == identities
    # Not JSON after all: a JSON string holding it, so the column still reads.
    assert json.loads(renderer(JSON_TEXT, "json")("[oops")) == "[oops"
    # A plain string attribute into a json column is a JSON string.
    assert renderer(STRING, "jsonb")('say "hi"') == '"say \\"hi\\""'


def test_a_text_column_takes_every_kind():
    for kind in (STRING, BOOLEAN, NUMBER, EPOCH, INSTANT, DATETIME, JSON, JSON_TEXT):
        assert type_problem("c", "text", kind, "text", uuid_ok=False) is None
        assert type_problem("c", "citext", kind, "citext", uuid_ok=False) is None


def test_a_type_that_cannot_hold_the_kind_is_named_with_what_to_use():
    assert type_problem("age", "integer", STRING, "integer", uuid_ok=False) == (
        "age: type integer cannot hold a string; use text (or uuid for sub)"
    )
    assert type_problem("seen", "date", JSON, "date", uuid_ok=False) == (
        "seen: type date cannot hold a JSON value; use jsonb, json or text"
    )


def test_an_unknown_type_takes_strings_only_and_uuid_only_where_allowed():
    # An enum or inet checks a string with its own input function; a number never goes there.
    assert type_problem("mood", "mood", STRING, "mood", uuid_ok=False) is None
    assert type_problem("n", "inet", NUMBER, "inet", uuid_ok=False) is not None
    assert type_problem("sub", "uuid", STRING, "uuid", uuid_ok=True) is None
    assert type_problem("tenant", "uuid", STRING, "uuid", uuid_ok=False) is not None


@pytest.mark.parametrize(
    "kind, family_name",
    [(STRING, "uuid"), (STRING, "inet"), (STRING, "mood"), (NUMBER, "numeric"),
     (DATETIME, "timestamp with time zone"), (DATETIME, "date")],
)  # fmt: skip
def test_a_type_postgresql_checks_never_gets_a_character_that_is_not_printable(kind, family_name):
    # PostgreSQL's input function would quote the value, newline and all, in its own error.
    render = renderer(kind, family_name)
    assert render("2024-01-02 03:04:05 +00") == "2024-01-02 03:04:05 +00"
    for forged in ("x\nHINT:  forged", "x\x1b[2K", "x\u2028y"):
        with pytest.raises(Unfit, match=f"invalid input syntax for type {family_name}"):
            render(forged)
    assert renderer(STRING, "text")("x\ny") == "x\ny"  # text holds every value as it is
