"""ListUsers paging and error translation, with botocore's Stubber: the real client, whose
requests are checked against the API model and answered from a script."""

import re
import socket
import threading
import time

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber

from cognito_fdw.api import is_cognito_name
from cognito_fdw.aws import client as client_module
from cognito_fdw.aws.client import Pool, Stats
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
    monkeypatch.setattr(client_module, "client_for", lambda options, table=None: real)
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


class StalledEndpoint:
    """A TCP server that accepts every connection and never answers (a hung endpoint)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read from or written to

    def close(self):
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def stalled():
    endpoint = StalledEndpoint()
    yield endpoint
    endpoint.close()


def test_a_stalled_endpoint_fails_at_the_request_deadline_and_retries_stop(stalled):
    # Unbounded, this would be 20 attempts of 1 s plus backoff; the deadline is 2.5 s.
    options = parse_options({
        "user_pool_id": POOL, "object": "users", "endpoint_url": stalled.url,
        "region": "us-east-1", "aws_access_key_id": "AKIDTEST",
        "aws_secret_access_key": "secret", "read_timeout": "1", "max_attempts": "20",
        "request_deadline": "2.5",
    })  # fmt: skip
    start = time.monotonic()
    with pytest.raises(CognitoApiError) as caught:
        Pool(options).call("ListUsers", Limit=1)
    elapsed = time.monotonic() - start
    # Not sooner than the deadline; far from the unbounded 20 attempts (no tight timing: a
    # loaded machine only makes it later, and the attempt count below is the real measure).
    assert 2.5 <= elapsed < 10
    err = caught.value
    assert err.code == "RequestDeadline"
    assert "ListUsers got no answer within request_deadline (2.5 s)" in err.message
    attempts = int(re.search(r"after (\d+) attempts?", err.message).group(1))
    assert 1 <= attempts <= len(stalled.accepted)
    assert "request_deadline" in err.hint
    # The abandoned request sends no further attempt: botocore's retry stops at the deadline.
    sent = len(stalled.accepted)
    time.sleep(3)
    assert len(stalled.accepted) == sent


def test_the_default_deadline_is_at_most_30_seconds_and_a_table_may_only_lower_it():
    from cognito_fdw.options import OPTIONS

    row = OPTIONS["request_deadline"]
    assert row.default <= 30 and row.limit and row.places == ("server", "table")


class DescribeCounter:
    """A client that answers DescribeUserPool as an emulator does (0 users) and counts."""

    def __init__(self):
        self.describes = 0

    def describe_user_pool(self, UserPoolId):  # noqa: N803 - boto3's parameter name
        self.describes += 1
        return {"UserPool": {"Id": UserPoolId, "EstimatedNumberOfUsers": 0}}


@pytest.mark.parametrize("ttl, describes", [("300", 1), ("0", 3)])
def test_describe_user_pool_is_cached_for_describe_ttl(monkeypatch, ttl, describes):
    fake = DescribeCounter()
    monkeypatch.setattr(client_module, "client_for", lambda options, table=None: fake)
    monkeypatch.setattr(client_module, "_descriptions", {})
    pool = Pool(parse_options({"user_pool_id": POOL, "object": "users", "describe_ttl": ttl}))
    estimates = [pool.estimated_users() for _ in range(3)]
    assert fake.describes == describes
    assert estimates == [client_module.DEFAULT_ESTIMATE] * 3  # an emulator's 0: a sane default


def test_a_region_botocore_does_not_know_is_named_with_the_nearest_ones():
    regions = client_module.aws_regions()
    assert {"us-east-1", "eu-west-1", "us-gov-west-1"} <= regions  # every partition
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="https://x")

    def unknown(region, endpoint=None):
        options = parse_options(
            {"user_pool_id": f"{region}_Abc", "object": "users", "region": region}
            | ({"endpoint_url": endpoint} if endpoint else {})
        )
        return client_module._unknown_region(options, exc)

    assert unknown("us-est-1") == ("us-est-1", ["us-east-1", "us-west-1", "us-east-2"])
    assert unknown("us-east-1") is None  # known: some other connection failure
    assert unknown("us-est-1", "http://127.0.0.1:9") is None  # not AWS: any region goes


def test_the_caches_signer_tells_every_credential_apart():
    """What the shared cache's keys are made of: another secret, token, key id or role
    (its external id included) is another signer; the same options are the same one."""
    from cognito_fdw.options import parse_options

    base = {"user_pool_id": "us-east-1_Abc", "object": "users",
            "aws_access_key_id": "AKIDONE", "aws_secret_access_key": "s1"}  # fmt: skip
    role = {"role_arn": "arn:aws:iam::123456789012:role/r", "external_id": "x1"}
    variants = [
        base,
        {**base, "aws_secret_access_key": "s2"},
        {**base, "aws_access_key_id": "AKIDTWO"},
        {**base, "aws_session_token": "t"},
        {**base, **role},
        {**base, **role, "external_id": "x2"},
    ]
    signers = [client_module.Pool(parse_options(v))._signer() for v in variants]
    assert len(set(signers)) == len(variants)
    assert client_module.Pool(parse_options(base))._signer() == signers[0]
