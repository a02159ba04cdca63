"""The options this issue adds: pushdown, max_requests_per_second, scan_workers, describe_ttl."""

from __future__ import annotations

import pytest

from cognito_fdw.errors import OptionError
from cognito_fdw.options import parse_options

BASE = {"user_pool_id": "us-east-1_abc", "object": "users"}


def test_defaults_are_safe():
    options = parse_options(BASE)
    assert options.pushdown is True
    assert options.max_requests_per_second == 25  # under Cognito's 30 ListUsers/s
    assert options.scan_workers == 8
    assert options.describe_ttl == 300


@pytest.mark.parametrize("raw, value", [("false", False), ("off", False), ("TRUE", True)])
def test_pushdown_takes_boolean_words(raw, value):
    assert parse_options({**BASE, "pushdown": raw}).pushdown is value


@pytest.mark.parametrize(
    "name, raw, hint",
    [("pushdown", "maybe", "'true' or 'false'"),
     ("max_requests_per_second", "0", "from 1 to 1000"),
     ("max_requests_per_second", "2.5", "whole number"),
     ("scan_workers", "17", "from 1 to 16"),
     ("describe_ttl", "-1", "from 0 to 86400")],
)  # fmt: skip
def test_bad_values_name_the_option_and_what_to_set(name, raw, hint):
    with pytest.raises(OptionError) as caught:
        parse_options({**BASE, name: raw})
    assert name in caught.value.message and repr(raw) in caught.value.message
    assert hint in caught.value.hint


class FakeClient:
    def __init__(self):
        self.describes = 0

    def describe_user_pool(self, UserPoolId):  # noqa: N803 - boto3's parameter name
        self.describes += 1
        return {"UserPool": {"Id": UserPoolId, "EstimatedNumberOfUsers": 0}}


@pytest.mark.parametrize("ttl, describes", [("300", 1), ("0", 3)])
def test_describe_user_pool_is_cached_for_describe_ttl(monkeypatch, ttl, describes):
    from cognito_fdw import client

    fake = FakeClient()
    monkeypatch.setattr(client, "client_for", lambda options: fake)
    monkeypatch.setattr(client, "_descriptions", {})
    pool = client.Pool(parse_options({**BASE, "describe_ttl": ttl}))
    estimates = [pool.estimated_users() for _ in range(3)]
    assert fake.describes == describes
    assert estimates == [client.DEFAULT_ESTIMATE] * 3  # an emulator's 0 gets a sane default
