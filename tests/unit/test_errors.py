import botocore.exceptions

from cognito_fdw.errors import CognitoFdwError, from_botocore_error, scrub


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
