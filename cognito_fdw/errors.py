"""The wrapper's errors, and the one place AWS failures become words a person can act on.

Everything raised inside the wrapper is a :class:`CognitoFdwError` carrying a message, a
hint and a detail.  ``fdw.py`` turns it into one PostgreSQL ERROR; nothing else in the
package knows about PostgreSQL.  Secrets are scrubbed from every string on the way out
(:mod:`scrubbing`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import botocore.exceptions

from .scrubbing import scrub

# Stands for the foreign table in a message, HINT or DETAIL: the adapter puts the table's
# qualified name in its place (:meth:`CognitoFdwError.naming`).  NUL cannot occur in any
# PostgreSQL text, option or name, so no value a message quotes is ever taken for it.
THIS_TABLE = "\0table\0"
# In its place when the table's name cannot be found.
UNNAMED_TABLE = "<table>"


def one_line(text: str | None) -> str | None:
    """``text`` with every control character and line or paragraph separator written as a
    Python escape (``\\n``): what reaches an error's message, HINT or DETAIL may hold a
    value from Cognito (a username, an attribute, an AWS message), and a newline in it
    would let it pose as another line of the client's output or the server log."""
    if text is None:
        return None
    return "".join(
        repr(char)[1:-1] if not char.isprintable() and char != " " else char for char in text
    )


class CognitoFdwError(Exception):
    """A failure with a message, an optional HINT and an optional DETAIL.

    ``superuser_detail``: the DETAIL to show instead when the role that sees the error is a
    superuser, for text from outside the wrapper that only a superuser may read (an
    endpoint's body: the endpoint may be a service of the database server's own network).
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        detail: str | None = None,
        superuser_detail: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail
        self.superuser_detail = superuser_detail

    def names_table(self) -> bool:
        """Whether a text of this error stands :data:`THIS_TABLE` for the table."""
        return any(THIS_TABLE in text for text in (self.message, self.hint, self.detail) if text)

    def naming(self, table: str | None) -> CognitoFdwError:
        """This error with :data:`THIS_TABLE` replaced by ``table`` (its quoted, qualified
        name) or, when that is None, by :data:`UNNAMED_TABLE`."""
        if not self.names_table():
            return self
        name = table or UNNAMED_TABLE
        self.message, self.hint, self.detail = (
            None if text is None else text.replace(THIS_TABLE, name)
            for text in (self.message, self.hint, self.detail)
        )
        self.args = (self.message,)
        return self

    def scrubbed(self, secrets: Iterable[str]) -> CognitoFdwError:
        """A copy whose every text has each secret replaced by ``***``."""
        secrets = [s for s in secrets if s]
        return CognitoFdwError(
            scrub(self.message, secrets),
            scrub(self.hint, secrets),
            scrub(self.detail, secrets),
            scrub(self.superuser_detail, secrets),
        )


class OptionError(CognitoFdwError):
    """A missing, unknown or malformed option."""


class ColumnError(CognitoFdwError):
    """A column that maps to nothing or whose type cannot hold its value."""


class CredentialError(CognitoFdwError):
    """No usable credentials: a secret that cannot be read, a profile or role that fails."""


class CognitoApiError(CognitoFdwError):
    """Cognito, or the way to it, answered with an error."""

    def __init__(
        self, message, hint=None, detail=None, code=None, request_id=None, superuser_detail=None
    ):
        super().__init__(message, hint, detail, superuser_detail)
        self.code = code
        self.request_id = request_id

    def reworded(self, message: str, hint: str | None = None) -> CognitoApiError:
        """The same answer in other words: the DETAILs, code and request id are kept, and
        the HINT unless another is given."""
        return CognitoApiError(
            message,
            hint or self.hint,
            self.detail,
            code=self.code,
            request_id=self.request_id,
            superuser_detail=self.superuser_detail,
        )

    def missing(self) -> bool:
        """True when Cognito says the user or group named does not exist (not the pool)."""
        if self.code == "UserNotFoundException":
            return True
        return (
            self.code == "ResourceNotFoundException"
            and "user pool" not in (self.detail or "").lower()
        )


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
        f"Run the query after ALTER FOREIGN TABLE {THIS_TABLE} OPTIONS (ADD pushdown 'false') "
        "to see whether a pushed-down filter is the cause, and report it with the request id.",
    ),
    "InternalErrorException": ("Cognito had an internal error, still after retries", _CHECK_RATE),
}


# Where the client keeps the first bytes of an error's body (attempts.py's before-parse hook).
ERROR_BODY = "CognitoFdwErrorBody"
_BODY_SHOWN = 160  # characters of an unexpected body shown in DETAIL

_CHECK_NOT_COGNITO = (
    "endpoint_url must be Cognito's API or an emulator's (moto: http://127.0.0.1:5000, "
    "cognito-local: http://127.0.0.1:9229), at its root path: check its host, port and path, "
    "or remove it to use AWS. A proxy in between must pass POST requests and their "
    "X-Amz-Target header through."
)
_CHECK_SERVER_FAULT = (
    "The endpoint, or a proxy or load balancer before it, failed without a Cognito error, "
    "still after retries: retry later; if it persists, check endpoint_url and any proxy "
    "between the database server and Cognito."
)


@dataclasses.dataclass(frozen=True)
class AwsAnswer:
    """What an AWS error answer says: its code, its message and the request's id."""

    code: str
    message: str
    request_id: str | None

    @property
    def detail(self) -> str:
        """The DETAIL of an error about it: ``AWS error code: ...; message: ...; request
        id: ...`` (the parts there are)."""
        detail = f"AWS error code: {self.code}"
        if self.message:
            detail += f"; message: {self.message}"
        if self.request_id:
            detail += f"; request id: {self.request_id}"
        return detail


def aws_answer(exc: botocore.exceptions.ClientError) -> AwsAnswer:
    """The fields of a botocore ``ClientError`` (any AWS service): read here only."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    return AwsAnswer(
        code=error.get("Code") or "Unknown",
        message=error.get("Message") or "",
        request_id=response.get("ResponseMetadata", {}).get("RequestId"),
    )


def from_client_error(
    exc, operation: str, pool_id: str | None, endpoint: str | None = None
) -> CognitoApiError:
    """Translate a botocore ``ClientError`` raised by ``operation`` sent to ``endpoint``.

    An answer that is no Cognito error (not JSON, or without an error type: botocore then
    uses the HTTP status as the code) is described as what came back: status, content
    type, the first bytes of the body and the URL.
    """
    answer = aws_answer(exc)
    response = getattr(exc, "response", None) or {}
    stranger = not_cognito_answer(response, operation, endpoint, answer.code.isdigit())
    if stranger is not None:
        return stranger
    meaning, hint = _AWS_CODES.get(
        answer.code, ("Cognito returned an error", "See the AWS message and request id in DETAIL.")
    )
    where = f" on user pool {pool_id}" if pool_id else ""
    return CognitoApiError(
        f"Cognito {operation} failed{where}: {meaning} ({answer.code})",
        hint=hint,
        detail=answer.detail,
        code=answer.code,
        request_id=answer.request_id,
    )


def not_cognito_answer(
    response, operation: str, endpoint: str | None, untyped: bool = False
) -> CognitoApiError | None:
    """The error for an answer (botocore's parsed response) that is none of Cognito's API:
    not JSON, or ``untyped`` (an error without its type); None for one of Cognito's.  It
    says what came back: status, content type, the URL, and to a superuser only the first
    bytes of the body (``superuser_detail``): an endpoint_url may name a service of the
    database server's network (its metadata service, an admin API) that the role reading
    the error could not reach itself.  Measured: SECURITY.md, what the guard cannot stop."""
    metadata = response.get("ResponseMetadata", {})
    headers = metadata.get("HTTPHeaders")
    content_type = headers.get("content-type", "") if headers is not None else None
    if not untyped and (content_type is None or "json" in content_type.lower()):
        return None
    content_type = content_type or ""
    status = metadata.get("HTTPStatusCode") or response.get("Error", {}).get("Code")
    body = response.get(ERROR_BODY)
    if body is None:  # botocore keeps a body it cannot parse as the message
        body = (response.get("Error", {}).get("Message") or "").encode()
    text = "".join(c if c.isprintable() else " " for c in body.decode("utf-8", "replace"))
    if not text:
        begins = "an empty body"
    else:
        more = "..." if len(text) > _BODY_SHOWN else ""
        begins = f"the body begins: {text[:_BODY_SHOWN] + more!r}"
    kind = content_type.split(";")[0].strip() or "no content type"
    server_fault = str(status) in ("500", "502", "503", "504")  # passing faults
    answered = f"HTTP status {status}; Content-Type: {content_type or '(none)'}; no AWS request id"
    return CognitoApiError(
        f"Cognito {operation} failed: the endpoint answered HTTP {status} ({kind}), which is "
        f"not an answer of Cognito's API ({endpoint or 'AWS'})",
        hint=_CHECK_SERVER_FAULT if server_fault else _CHECK_NOT_COGNITO,
        detail=f"{answered}; {begins if not text else 'the body is shown to superusers only'}",
        code=f"HTTP{status}",
        superuser_detail=f"{answered}; {begins}",
    )


_NO_CREDENTIALS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
)
# The way to the endpoint failed; the timeouts say so in their own words.
_UNREACHABLE = (
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.SSLError,
)
_UNREACHABLE_WORDS = {
    botocore.exceptions.ConnectTimeoutError: "the endpoint did not accept a connection in time",
    botocore.exceptions.ReadTimeoutError: "the endpoint did not answer in time",
}


def from_botocore_error(
    exc, operation: str, endpoint: str, unknown_region: tuple[str, list[str]] | None = None
) -> CognitoApiError:
    """Translate a botocore error that is not an AWS answer (network, credentials).

    ``unknown_region``: the region and the nearest AWS regions, when the request went to
    AWS in a region botocore does not know (a mistyped region: no endpoint answers).
    """
    name = type(exc).__name__
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return CognitoApiError(
            f"Cognito {operation} not sent: a value is outside what the API accepts",
            hint="Check the values the query compares with (names are 1 to 128 characters) "
            "and the table's options; DETAIL names the parameter.",
            detail=str(exc),
            code=name,
        )
    if isinstance(exc, _NO_CREDENTIALS):
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
    if isinstance(exc, _UNREACHABLE):
        if unknown_region is not None:
            region, near = unknown_region
            return CognitoApiError(
                f"Cognito {operation} failed: {region!r} is not an AWS region, so no endpoint "
                f"answers ({endpoint})",
                hint="Check user_pool_id and region: a pool id starts with its region, e.g. "
                f"us-east-1_AbCdEf123. The nearest AWS regions with Cognito user pools: "
                f"{', '.join(near)}.",
                detail=f"{name}: {exc}",
                code="UnknownRegion",
            )
        what = next(
            (words for cls, words in _UNREACHABLE_WORDS.items() if isinstance(exc, cls)),
            "the endpoint could not be reached",
        )
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
