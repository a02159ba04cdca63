import json

import botocore.exceptions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cognito_fdw import errors, scrubbing
from cognito_fdw.errors import CognitoFdwError, from_botocore_error
from cognito_fdw.scrubbing import scrub

from ..support.encodings import ENCODERS

# Any character but the scrubber's own "*", which could make "***" look like a secret.
_SECRETS = st.text(
    st.characters(blacklist_characters="*", blacklist_categories=("Cs",)), min_size=1
)


@pytest.mark.parametrize("name", ENCODERS)
@given(secret=_SECRETS)
# A secret's forms are computed at its first scrub (tens of ms for long non-ASCII text), and
# a loaded machine makes that slower: no deadline.
@settings(deadline=None)
def test_no_encoding_of_a_secret_survives_scrubbing(name, secret):
    encoded = ENCODERS[name](secret)
    out = scrub(f"value <{encoded}> refused", [secret])
    assert encoded not in out and secret not in out


def test_the_issue_case_a_header_value_shown_as_bytes():
    token = "HEAD\nTAIL"
    message = f"Invalid header value {token.encode()!r}"
    assert message == "Invalid header value b'HEAD\\nTAIL'"
    assert scrub(message, [token]) == "Invalid header value b'***'"


def test_each_long_line_of_a_multi_line_secret_is_scrubbed_on_its_own():
    secret = "first-line-of-it\nsecond-line-too\nend"
    out = scrub("cut at the break: first-line-of-it; then second-line-too", [secret])
    assert out == "cut at the break: ***; then ***"
    # Lines shorter than MIN_LINE would blank common words everywhere: they are kept.
    assert len("end") < scrubbing.MIN_LINE
    assert scrub("the end of the message", [secret]) == "the end of the message"


def test_a_secret_wrapped_over_lines_in_a_message_is_scrubbed():
    secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
    wrapped = f"token: {secret[:20]}\n    {secret[20:]} (end)"
    assert scrub(wrapped, [secret]) == "token: *** (end)"


def test_remembered_secrets_are_scrubbed_in_every_encoding(monkeypatch):
    monkeypatch.setattr(scrubbing, "_remembered", set())
    scrubbing.remember_secret("vault 'secret'\u00e9")
    out = scrub(f"a {json.dumps(chr(34) + 'vault ' + chr(39) + 'secret' + chr(39) + 'é')} b")
    assert "secret" not in out and out == 'a "\\"***" b'
    assert "vault" not in scrub(repr("vault 'secret'é".encode()))


def test_scrub_replaces_secrets_and_anything_shaped_like_an_access_key():
    text = "key AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG token FwoGZXIvYXdzE"
    out = scrub(text, ["wJalrXUtnFEMI/K7MDENG", "FwoGZXIvYXdzE", ""])
    assert "AKIAIOSFODNN7EXAMPLE" not in out and "wJalrXUtnFEMI" not in out
    assert out.count("***") == 3


def test_scrubbed_copies_every_part():
    err = CognitoFdwError("a s3cret", hint="h s3cret", detail="d s3cret").scrubbed(["s3cret"])
    assert "s3cret" not in err.message + err.hint + err.detail


def test_unreachable_endpoint_names_it_and_hints_at_timeouts():
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    err = from_botocore_error(exc, "ListUsers", "http://127.0.0.1:9")
    assert "could not be reached" in err.message and "127.0.0.1:9" in err.message
    assert "endpoint_url" in err.hint and "connect_timeout" in err.hint


def test_missing_credentials_say_where_to_put_them():
    err = from_botocore_error(botocore.exceptions.NoCredentialsError(), "ListUsers", "AWS")
    assert "credentials" in err.message and "user mapping" in err.hint


def test_parameter_validation_is_not_blamed_on_the_endpoint():
    exc = botocore.exceptions.ParamValidationError(report="Invalid length for parameter X")
    err = from_botocore_error(exc, "GetGroup", "AWS")
    assert "not sent" in err.message and "Invalid length" in err.detail
    assert "endpoint_url" not in err.hint


def _client_error(status, headers, error, **extra):
    response = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status,
                                                     "HTTPHeaders": headers}, **extra}  # fmt: skip
    return botocore.exceptions.ClientError(response, "ListUsers")


def test_an_answer_that_is_no_cognito_error_says_what_came_back():
    page = b"<html><head><title>404 Not Found</title></head><body>" + b"x" * 400
    exc = _client_error(
        404, {"content-type": "text/html; charset=utf-8"},
        {"Code": "404", "Message": page.decode()}, **{errors.ERROR_BODY: page[:512]},
    )  # fmt: skip
    err = errors.from_client_error(exc, "ListUsers", "us-east-1_X", "http://127.0.0.1:8080/x")
    assert err.message == (
        "Cognito ListUsers failed: the endpoint answered HTTP 404 (text/html), which is not an "
        "answer of Cognito's API (http://127.0.0.1:8080/x)"
    )
    # The body only for a superuser: the endpoint may be a service of the server's network.
    assert err.detail == (
        "HTTP status 404; Content-Type: text/html; charset=utf-8; no AWS request id; the body "
        "is shown to superusers only"
    )
    assert err.superuser_detail.startswith(
        "HTTP status 404; Content-Type: text/html; charset=utf-8; no AWS request id; the body "
        "begins: '<html><head><title>404 Not Found</title></head><body>xxx"
    )
    assert err.superuser_detail.endswith("...'") and len(err.superuser_detail) < 300
    kept = err.reworded("other words").scrubbed(["Not Found"])
    assert kept.detail == err.detail
    assert "<title>404 ***</title>" in kept.superuser_detail
    assert "endpoint_url must be Cognito's API" in err.hint
    # No body and no type at all; a 503 of a load balancer is a passing fault.
    bare = errors.from_client_error(_client_error(404, {}, {"Code": "404"}), "ListUsers", None)
    assert "(no content type)" in bare.message and bare.detail.endswith("an empty body")
    busy = _client_error(503, {"content-type": "text/html"}, {"Code": "503", "Message": "busy"})
    assert "retry later" in errors.from_client_error(busy, "ListUsers", None).hint


def test_a_cognito_error_stays_a_cognito_error():
    exc = _client_error(
        400, {"content-type": "application/x-amz-json-1.1"},
        {"Code": "ResourceNotFoundException", "Message": "User pool x does not exist."},
    )  # fmt: skip
    err = errors.from_client_error(exc, "ListUsers", "us-east-1_X", "https://cognito")
    assert err.code == "ResourceNotFoundException" and "was not found" in err.message


def test_an_unknown_region_is_named_with_the_nearest_ones():
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="https://x")
    err = from_botocore_error(
        exc, "ListUsers", "https://cognito-idp.us-est-1.amazonaws.com", ("us-est-1", ["us-east-1"])
    )
    assert err.message.startswith("Cognito ListUsers failed: 'us-est-1' is not an AWS region")
    assert err.hint.endswith("The nearest AWS regions with Cognito user pools: us-east-1.")
