import pytest

from cognito_fdw.errors import OptionError
from cognito_fdw.options import KNOWN_OPTIONS, parse_options

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
    assert options.secrets() == ("s3cr3t",)
    assert "s3cr3t" not in repr(options)


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
    assert repr(value) in err.message or "empty" in err.message
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
