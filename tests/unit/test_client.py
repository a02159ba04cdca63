"""ListUsers paging and error translation, with botocore's Stubber: the real client, whose
requests are checked against the API model and answered from a script."""

import boto3
import pytest
from botocore.stub import Stubber

from cognito_fdw import client as client_module
from cognito_fdw.client import Pool, Stats, is_cognito_name
from cognito_fdw.errors import CognitoApiError
from cognito_fdw.options import parse_options

POOL = "us-east-1_Test123"


@pytest.fixture
def pool(monkeypatch):
    real = boto3.client(
        "cognito-idp",
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
    )
    monkeypatch.setattr(client_module, "client_for", lambda options: real)
    pool = Pool(parse_options({"user_pool_id": POOL, "object": "users"}))
    with Stubber(real) as stubber:
        pool.stubber = stubber
        yield pool
        stubber.assert_no_pending_responses()


def users(*names):
    return [{"Username": n, "Attributes": [], "Enabled": True} for n in names]


def expect(pool, response, **params):
    pool.stubber.add_response("list_users", response, {"UserPoolId": POOL, **params})


def names(pool, **kwargs):
    stats = Stats()
    return [u["Username"] for page in pool.list_user_pages(stats, **kwargs) for u in page], stats


def test_follows_tokens_through_short_and_empty_pages(pool):
    expect(pool, {"Users": users("a", "b"), "PaginationToken": "t1"}, Limit=60)
    expect(pool, {"Users": [], "PaginationToken": "t2"}, Limit=60, PaginationToken="t1")
    expect(pool, {"Users": users("c")}, Limit=60, PaginationToken="t2")
    got, stats = names(pool)
    assert got == ["a", "b", "c"]
    assert (stats.requests, stats.rows) == (3, 3)


def test_an_emulator_without_tokens_is_one_page(pool):
    expect(pool, {"Users": users(*"abc")}, Limit=60)
    assert names(pool)[0] == ["a", "b", "c"]


def test_limit_asks_only_for_what_is_still_needed(pool):
    expect(pool, {"Users": users(*"abcd"), "PaginationToken": "t1"}, Limit=5)
    expect(pool, {"Users": users("e"), "PaginationToken": "t2"}, Limit=1, PaginationToken="t1")
    got, stats = names(pool, limit=5)
    assert got == list("abcde") and stats.requests == 2


def test_limit_above_a_page_asks_for_full_pages(pool):
    expect(pool, {"Users": users("a"), "PaginationToken": "t1"}, Limit=60)
    expect(pool, {"Users": users("b")}, Limit=60, PaginationToken="t1")
    assert names(pool, limit=100)[0] == ["a", "b"]


def test_filter_is_sent(pool):
    expect(pool, {"Users": users("a")}, Limit=60, Filter='email = "a@x.org"')
    assert names(pool, filter='email = "a@x.org"')[0] == ["a"]


def test_a_repeated_token_is_an_error_not_a_loop(pool):
    expect(pool, {"Users": users("a"), "PaginationToken": "t1"}, Limit=60)
    expect(pool, {"Users": users("b"), "PaginationToken": "t1"}, Limit=60, PaginationToken="t1")
    with pytest.raises(CognitoApiError, match="PaginationToken it had already returned"):
        names(pool)


def test_client_errors_carry_code_request_id_and_a_hint(pool):
    pool.stubber.add_client_error(
        "list_users",
        "ResourceNotFoundException",
        "User pool us-east-1_Test123 does not exist.",
        400,
        expected_params={"UserPoolId": POOL, "Limit": 60},
        response_meta={"RequestId": "req-123"},
    )
    with pytest.raises(CognitoApiError) as caught:
        names(pool)
    err = caught.value
    assert err.code == "ResourceNotFoundException" and err.request_id == "req-123"
    assert "ListUsers" in err.message and POOL in err.message
    assert "req-123" in err.detail and "does not exist" in err.detail
    assert "user_pool_id" in err.hint


@pytest.mark.parametrize(
    "code, words",
    [
        ("UnrecognizedClientException", "aws_access_key_id"),
        ("AccessDeniedException", "IAM policy"),
        ("TooManyRequestsException", "max_requests_per_second"),
        ("SomethingNew", "request id"),
    ],
)
def test_each_error_code_gets_a_hint(pool, code, words):
    pool.stubber.add_client_error("list_users", code, "msg", 400)
    with pytest.raises(CognitoApiError) as caught:
        names(pool)
    assert words in caught.value.hint


@pytest.mark.parametrize(
    "value, ok",
    [("alice", True), ("李", True), ("a.b-c_d@e+f", True), ("x" * 128, True), ("", False),
     ("x" * 129, False), ("a b", False), ("tab\there", False), ("\x01", False)],
)  # fmt: skip
def test_is_cognito_name(value, ok):
    assert is_cognito_name(value) is ok
