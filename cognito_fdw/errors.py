"""The wrapper's errors, and the one place AWS failures become words a person can act on.

Everything raised inside the wrapper is a :class:`CognitoFdwError` carrying a message, a
hint and a detail.  ``fdw.py`` turns it into one PostgreSQL ERROR; nothing else in the
package knows about PostgreSQL.  Secrets are scrubbed from every string on the way out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class CognitoFdwError(Exception):
    """A failure with a message, an optional HINT and an optional DETAIL."""

    def __init__(self, message: str, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail

    def scrubbed(self, secrets: Iterable[str]) -> CognitoFdwError:
        """A copy whose every text has each secret replaced by ``***``."""
        secrets = [s for s in secrets if s]
        return CognitoFdwError(
            scrub(self.message, secrets), scrub(self.hint, secrets), scrub(self.detail, secrets)
        )


class OptionError(CognitoFdwError):
    """A missing, unknown or malformed option."""


class ColumnError(CognitoFdwError):
    """A column that maps to nothing or whose type cannot hold its value."""


class CredentialError(CognitoFdwError):
    """No usable credentials: a secret that cannot be read, a profile or role that fails."""


class CognitoApiError(CognitoFdwError):
    """Cognito, or the way to it, answered with an error."""

    def __init__(self, message, hint=None, detail=None, code=None, request_id=None):
        super().__init__(message, hint, detail)
        self.code = code
        self.request_id = request_id


# Access keys have a recognisable shape; scrub any, not just the configured one, so a key
# echoed back by an endpoint (or pasted into the wrong option) never reaches a message.
_ACCESS_KEY_RE = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b")


# Secrets the wrapper read at run time (from a secrets table), which no option holds.
_remembered: set[str] = set()


def remember_secret(value: str) -> None:
    """Scrub ``value`` from every message from now on, in this backend."""
    if value:
        _remembered.add(value)


def scrub(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    if text is None:
        return None
    for secret in sorted({s for s in (*secrets, *_remembered) if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _ACCESS_KEY_RE.sub("***", text)


_CHECK_POOL = (
    "Check user_pool_id and region: the pool id starts with its region, e.g. us-east-1_AbCdEf123."
)
_CHECK_KEYS = (
    "Check the credentials: aws_access_key_id with aws_secret_access_key (user mapping or "
    "server) or with the secret api_key_id/api_key_name names, aws_profile, or the server's "
    "AWS credential chain (environment, instance role)."
)
_CHECK_PERMS = (
    "The credentials work but lack permission: allow the cognito-idp action named above on "
    "this user pool in the IAM policy."
)
_CHECK_RATE = (
    "Cognito's request-rate quota is shared by every app using this account and region. "
    "Lower max_requests_per_second, narrow the query with WHERE or LIMIT, or retry later."
)
_CHECK_ENDPOINT = (
    "Check endpoint_url (leave it unset for AWS itself), the region, and that the database "
    "server can reach the endpoint; connect_timeout and read_timeout bound the wait."
)

# AWS error code -> (what it means, what to check)
_AWS_CODES = {
    "ResourceNotFoundException": ("the user pool (or a resource in it) was not found", _CHECK_POOL),
    "UserNotFoundException": ("the user was not found", "Check the username."),
    "NotAuthorizedException": ("not authorized", _CHECK_PERMS),
    "AccessDeniedException": ("access denied", _CHECK_PERMS),
    "AccessDenied": ("access denied", _CHECK_PERMS),
    "UnrecognizedClientException": ("the access key is not recognised", _CHECK_KEYS),
    "InvalidClientTokenId": ("the access key is not recognised", _CHECK_KEYS),
    "SignatureDoesNotMatch": ("the secret access key does not match the key id", _CHECK_KEYS),
    "InvalidSignatureException": ("the request signature is invalid", _CHECK_KEYS),
    "ExpiredTokenException": ("the session credentials have expired", _CHECK_KEYS),
    "ExpiredToken": ("the session credentials have expired", _CHECK_KEYS),
    "TooManyRequestsException": ("throttled by Cognito, still after retries", _CHECK_RATE),
    "ThrottlingException": ("throttled, still after retries", _CHECK_RATE),
    "LimitExceededException": ("a Cognito limit was exceeded", _CHECK_RATE),
    "InvalidParameterException": (
        "Cognito refused a request parameter",
        "Run the query with the table option pushdown 'false' to see whether a pushed-down "
        "filter is the cause, and report it with the request id.",
    ),
    "InternalErrorException": ("Cognito had an internal error, still after retries", _CHECK_RATE),
}


def from_client_error(exc, operation: str, pool_id: str | None) -> CognitoApiError:
    """Translate a botocore ``ClientError`` raised by ``operation``."""
    error = exc.response.get("Error", {}) if hasattr(exc, "response") else {}
    code = error.get("Code") or "Unknown"
    aws_message = error.get("Message") or ""
    request_id = (
        exc.response.get("ResponseMetadata", {}).get("RequestId")
        if hasattr(exc, "response")
        else None
    )
    meaning, hint = _AWS_CODES.get(
        code, ("Cognito returned an error", "See the AWS message and request id in DETAIL.")
    )
    where = f" on user pool {pool_id}" if pool_id else ""
    detail = f"AWS error code: {code}"
    if aws_message:
        detail += f"; message: {aws_message}"
    if request_id:
        detail += f"; request id: {request_id}"
    return CognitoApiError(
        f"Cognito {operation} failed{where}: {meaning} ({code})",
        hint=hint,
        detail=detail,
        code=code,
        request_id=request_id,
    )


def from_botocore_error(exc, operation: str, endpoint: str) -> CognitoApiError:
    """Translate a botocore error that is not an AWS answer (network, credentials)."""
    name = type(exc).__name__
    if name == "ParamValidationError":
        return CognitoApiError(
            f"Cognito {operation} not sent: a value is outside what the API accepts",
            hint="Check the values the query compares with (names are 1 to 128 characters) "
            "and the table's options; DETAIL names the parameter.",
            detail=str(exc),
            code=name,
        )
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return CognitoApiError(
            f"Cognito {operation} failed: no usable AWS credentials ({name})",
            hint=(
                "Set aws_access_key_id and aws_secret_access_key in a user mapping, or give the "
                "database server's OS user an AWS credential chain (environment, profile, "
                "instance or container role)."
            ),
            detail=str(exc),
            code=name,
        )
    if name in (
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ProxyConnectionError",
        "SSLError",
    ):
        what = {
            "ConnectTimeoutError": "the endpoint did not accept a connection in time",
            "ReadTimeoutError": "the endpoint did not answer in time",
        }.get(name, "the endpoint could not be reached")
        return CognitoApiError(
            f"Cognito {operation} failed: {what} ({endpoint})",
            hint=_CHECK_ENDPOINT,
            detail=f"{name}: {exc}",
            code=name,
        )
    return CognitoApiError(
        f"Cognito {operation} failed: {name}",
        hint=_CHECK_ENDPOINT,
        detail=str(exc),
        code=name,
    )
