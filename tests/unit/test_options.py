import re
from pathlib import Path

import pytest

from cognito_fdw.errors import OptionError
from cognito_fdw.optiondocs import guard_rules_sql, readme_table
from cognito_fdw.options import (
    GROUPS,
    KNOWN_OPTIONS,
    REGISTRY,
    SERVER,
    TABLE,
    USER_MAPPING,
    USER_MAPPING_OPTIONS,
    closest,
    parse_options,
)

BASE = {"user_pool_id": "eu-west-2_AbC123", "object": "users"}


def parse(**extra):
    return parse_options({**BASE, **extra})


def error(**extra) -> OptionError:
    with pytest.raises(OptionError) as caught:
        parse(**extra)
    return caught.value


def test_minimal_options_take_the_region_from_the_pool_id():
    options = parse()
    assert options.region == "eu-west-2"
    assert options.endpoint_url is None and options.aws_access_key_id is None
    assert (options.connect_timeout, options.read_timeout, options.max_attempts) == (5.0, 15.0, 5)


def test_supabase_option_names_are_accepted():
    options = parse(
        region="eu-west-2",
        aws_access_key_id="AKIAEXAMPLE123456789",
        aws_secret_access_key="s3cr3t",
        endpoint_url="http://127.0.0.1:5000",
    )
    assert options.aws_secret_access_key == "s3cr3t"
    assert "s3cr3t" not in repr(options) and "AKIAEXAMPLE" not in repr(options)


def test_pool_in_another_region_is_refused_with_both_regions_named():
    err = error(region="us-east-1")
    assert "eu-west-2" in err.message and "us-east-1" in err.message
    assert "eu-west-2" in err.hint


@pytest.mark.parametrize("pool", ["", "AbC123", "eu-west-2-AbC123", "eu-west-2_Ab C", "ü_1"])
def test_malformed_pool_id(pool):
    err = error(user_pool_id=pool)
    assert "user_pool_id" in err.message


def test_missing_pool_id_says_where_to_find_it():
    with pytest.raises(OptionError, match="missing option user_pool_id") as caught:
        parse_options({"object": "users"})
    assert "Cognito console" in caught.value.hint


def test_unknown_option_suggests_the_close_one_and_lists_all():
    err = error(user_pool="x", regoin="eu-west-2")
    assert "regoin (did you mean region?)" in err.message
    assert "user_pool (did you mean user_pool_id?)" in err.message
    for name in KNOWN_OPTIONS:
        assert name in err.hint


@pytest.mark.parametrize(
    "extra, name",
    [
        ({"aws_access_key_id": "AKIAEXAMPLE"}, "aws_secret_access_key"),
        ({"aws_secret_access_key": "s3cr3t"}, "aws_access_key_id"),
    ],
)
def test_keys_come_in_pairs(extra, name):
    err = error(**extra)
    assert name in err.message
    assert "s3cr3t" not in err.message + err.hint


def test_session_token_needs_keys():
    assert "aws_session_token" in error(aws_session_token="tok").message


@pytest.mark.parametrize(
    "name, value",
    [
        ("connect_timeout", "0"),
        ("connect_timeout", "abc"),
        ("read_timeout", "nan"),
        ("read_timeout", "1e9"),
        ("max_attempts", "0"),
        ("max_attempts", "2.5"),
        ("retry_mode", "legacy"),
        ("object", "roles"),
        ("endpoint_url", "ftp://x"),
        ("endpoint_url", "http://user:pw@host"),
        ("region", "mars"),
        ("region", ""),
    ],
)
def test_malformed_values_name_the_option_and_show_the_value(name, value):
    err = error(**{name: value})
    assert name in err.message
    assert f"'{value}'" in err.message or "empty" in err.message
    assert err.hint


def test_object_lists_what_is_supported():
    err = error(object="roles")
    assert "users" in err.hint


def test_huge_values_are_refused_without_echoing_them():
    err = error(aws_access_key_id="AKIA", aws_secret_access_key="x" * 5000)
    assert "x" * 100 not in err.message + err.hint


def test_object_is_required():
    with pytest.raises(OptionError, match="missing option object"):
        parse_options({"user_pool_id": "eu-west-2_AbC123"})


# -- the registry: one source for parsing, the guard and the README ---------------------


def test_guard_sql_holds_the_registry_rules():
    # Regenerate with: python -m cognito_fdw.optiondocs
    text = (Path(__file__).parents[2] / "sql" / "guard.sql").read_text()
    assert guard_rules_sql() in text


def test_every_option_has_a_place_and_the_places_follow_the_rule():
    # Where requests go, whose credentials sign them, where secrets come from and the
    # server's limits are the server's; a table carries only table options and limits.
    for row in REGISTRY:
        assert row.places and set(row.places) <= {SERVER, TABLE, USER_MAPPING}
        if TABLE in row.places:
            assert (
                row.name in ("object", "writable", "pushdown", "deterministic_collations")
                or row.limit
            )
    assert set(USER_MAPPING_OPTIONS) == {
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "api_key_id",
        "api_key_name", "role_arn", "external_id", "role_session_name", "role_duration_seconds",
    }  # fmt: skip
    server_only = {row.name for row in REGISTRY if row.places == (SERVER,)}
    assert {
        "endpoint_url",
        "sts_endpoint_url",
        "aws_profile",
        "secrets_conninfo",
        "secrets_relation",
        "secret_cache_seconds",
        "user_pool_id",
        "region",
    } <= server_only


@pytest.mark.parametrize(
    "name, expected",
    [("regoin", "region"), ("user_pool", "user_pool_id"), ("max_attempt", "max_attempts"),
     ("scan_worker", "scan_workers"), ("pool", None), ("x", None), ("endpoint", None)],
)  # fmt: skip
def test_closest_name(name, expected):
    assert closest(name, KNOWN_OPTIONS) == expected


@pytest.mark.parametrize("name", ["aws_secret_access_key", "aws_session_token", "external_id"])
@pytest.mark.parametrize(
    "bad", ["HEADX\nTAILX", "TABA\tTABB", "CRVAL\r", "BELLVAL\x07", "DELVAL\x7f"]
)
def test_control_characters_are_refused_and_the_value_is_never_shown(name, bad):
    extra = {"aws_access_key_id": "AKIDX", "aws_secret_access_key": "s3cr3t", name: bad}
    if name == "external_id":
        extra["role_arn"] = "arn:aws:iam::123456789012:role/r"
    err = error(**extra)
    assert err.message == f"option {name} holds a control character (a newline, tab, ...)"
    for part in re.split(r"[\x00-\x1f\x7f]", bad):
        assert not part or part not in err.message + err.hint


def test_values_are_shown_sql_quoted():
    assert error(retry_mode="it's").message == "invalid value for option retry_mode: 'it''s'"


@pytest.mark.parametrize("value", ["1_000", "٣", "0x10", " 5 5", "5e", "inf", "Infinity"])
def test_numbers_are_plain_decimal(value):
    assert "invalid value for option max_attempts" in error(max_attempts=value).message


def test_emulator_pool_ids_are_accepted_with_a_region():
    # cognito-local's ids have no region prefix; the API's pattern is [\w-]+_[0-9a-zA-Z]+.
    options = parse(user_pool_id="local_7DN76x5E", region="us-east-1",
                    endpoint_url="http://127.0.0.1:9229")  # fmt: skip
    assert (options.user_pool_id, options.region) == ("local_7DN76x5E", "us-east-1")
    err = error(user_pool_id="local_7DN76x5E", endpoint_url="http://127.0.0.1:9229")
    assert err.message == "option region is needed for user pool local_7DN76x5E"


def test_readme_table_names_every_option_once():
    table = readme_table()
    for row in REGISTRY:
        assert table.count(f"| `{row.name}` |") == 1


def test_every_option_is_in_a_group_and_its_cell_is_short():
    # The README lists options in one table per group; a cell is a sentence or two, and the
    # long story lives in docs/ (postgres_fdw's documentation keeps its options so).
    for row in REGISTRY:
        assert row.group in GROUPS, f"{row.name}: group {row.group!r} is none of {GROUPS}"
        words = len(re.sub(r"\]\([^)]*\)", "]", row.text).split())
        assert words <= 40, f"{row.name}: {words} words; move the detail to a page under docs/"
    tables = readme_table().split("### ")[1:]
    assert len(tables) == len(GROUPS)
    for group, table in zip(GROUPS, tables):
        names = re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
        assert {n for n in names if n != "wrapper"} == {
            row.name for row in REGISTRY if row.group == group
        }


def test_a_numbers_range_is_written_once():
    # The doc says {range}; the README and messages fill in low and high.
    for row in REGISTRY:
        if row.kind in ("int", "float"):
            assert "{range}" in row.doc and f"{row.low:g} to {row.high:g}" in row.text
        assert "{range}" not in row.text


# -- pushdown, max_requests_per_second, scan_workers, describe_ttl ---------------------------


def test_the_pushdown_and_rate_defaults_are_safe():
    options = parse()
    assert options.pushdown is True
    assert options.max_requests_per_second == 25  # under Cognito's 30 ListUsers/s
    assert options.scan_workers == 8
    assert options.describe_ttl == 300


@pytest.mark.parametrize("raw, value", [("false", False), ("off", False), ("TRUE", True)])
def test_pushdown_takes_boolean_words(raw, value):
    assert parse(pushdown=raw).pushdown is value


@pytest.mark.parametrize(
    "name, raw, hint",
    [("pushdown", "maybe", "'true' or 'false'"),
     ("max_requests_per_second", "0", "from 1 to 1000"),
     ("max_requests_per_second", "2.5", "whole number"),
     ("scan_workers", "17", "from 1 to 16"),
     ("describe_ttl", "-1", "from 0 to 86400")],
)  # fmt: skip
def test_bad_values_name_the_option_and_what_to_set(name, raw, hint):
    caught = error(**{name: raw})
    assert name in caught.message and repr(raw) in caught.message
    assert hint in caught.hint
