"""The wrapper's errors, and the one place AWS failures become words a person can act on.

Everything raised inside the wrapper is a :class:`CognitoFdwError` carrying a message, a
hint and a detail.  ``fdw.py`` turns it into one PostgreSQL ERROR; nothing else in the
package knows about PostgreSQL.  Secrets are scrubbed from every string on the way out.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import urllib.parse
from collections.abc import Iterable

import botocore.exceptions

# Stands for the foreign table in a message, HINT or DETAIL: the adapter puts the table's
# qualified name in its place (:meth:`CognitoFdwError.naming`).  NUL cannot occur in any
# PostgreSQL text, option or name, so no value a message quotes is ever taken for it.
THIS_TABLE = "\0table\0"
# In its place when the table's name cannot be found.
UNNAMED_TABLE = "<table>"


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


# Access keys have a recognisable shape; scrub any, not just the configured one, so a key
# echoed back by an endpoint (or pasted into the wrong option) never reaches a message.
_ACCESS_KEY_RE = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b")

# A line of a multi-line secret is scrubbed on its own only from this length.  A message may
# show one line of it (a header value cut at the line break), so lines count; but a short
# line ("-----", "key", "a") would blank the same letters wherever they occur in a message,
# making it unreadable, and so few characters give little of the secret away.
MIN_LINE = 8

# Escape sequences whose hex digits an encoder may write in either case (%2f or %2F, \u00e9
# or \u00E9).
_HEX_ESCAPE_RE = re.compile(r"(%|\\x)([0-9A-Fa-f]{2})|(\\u)([0-9A-Fa-f]{4})|(\\U)([0-9A-Fa-f]{8})")

# Between two characters of a secret a message may break the line (wrapped output), with
# the next line indented.
_LINE_BREAK = r"(?:\r?\n[ \t]*)?"


# Secrets the wrapper read at run time (from a secrets table), which no option holds.
_remembered: set[str] = set()


def remember_secret(value: str) -> None:
    """Scrub ``value`` from every message from now on, in this backend."""
    if value:
        _remembered.add(value)


def scrub(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """``text`` with every form of each secret (and of each remembered one) replaced by
    ``***``, and anything shaped like an access key id too; None stays None.

    The forms are those of :func:`encodings`, and the raw secret broken over lines.
    """
    if text is None:
        return None
    wanted = frozenset(s for s in (*secrets, *_remembered) if s)
    forms: set[str] = set()
    for secret in wanted:
        forms |= encodings(secret)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    for secret in sorted(wanted, key=len, reverse=True):
        if len(secret) > 1:
            text = re.sub(_LINE_BREAK.join(map(re.escape, secret)), "***", text)
    return _ACCESS_KEY_RE.sub("***", text)


@functools.lru_cache(maxsize=256)
def encodings(secret: str) -> frozenset[str]:
    """Every form ``secret`` can take in a message: itself; Python's ``repr`` of it as str
    (either quote, ``ascii()``) and as UTF-8 or Latin-1 bytes; JSON (ASCII-only or not, ``/``
    escaped or not); URL-encoded (``quote``, ``quote`` with ``/`` safe, ``quote_plus``); an
    SQL literal's doubled quotes; hex escapes in upper and lower case; each of these encoded
    once more (a repr inside JSON, say); and the same for each line of a multi-line secret
    that has at least ``MIN_LINE`` characters.  Empty strings are left out.
    """
    parts = {secret} | {line for line in secret.splitlines() if len(line) >= MIN_LINE}
    once = {form for part in parts for form in _encoded(part)}
    twice = {form for first in once for form in _encoded(first)}
    return frozenset(form for form in once | twice if form)


def _encoded(text: str) -> set[str]:
    forms = {
        text,
        text.replace("'", "''"),
        *(_escaped(text, q, ascii_only) for q in "'\"" for ascii_only in (False, True)),
        json.dumps(text)[1:-1],
        json.dumps(text)[1:-1].replace("/", "\\/"),  # encoders that escape "/" (PHP, Jackson)
        json.dumps(text, ensure_ascii=False)[1:-1],
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote(text),
        urllib.parse.quote_plus(text),
    }
    for charset in ("utf-8", "latin-1"):
        try:
            raw = text.encode(charset)
        except UnicodeEncodeError:
            continue
        forms |= {_bytes_escaped(raw, "'"), _bytes_escaped(raw, '"')}
    for form in list(forms):
        forms.add(_HEX_ESCAPE_RE.sub(lambda m: _hex_case(m, str.upper), form))
        forms.add(_HEX_ESCAPE_RE.sub(lambda m: _hex_case(m, str.lower), form))
    return forms


def _hex_case(match: re.Match, case) -> str:
    prefix, digits = (group for group in match.groups() if group is not None)
    return prefix + case(digits)


_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(text: str, quote: str, ascii_only: bool = False) -> str:
    """The inside of ``repr(text)`` (``ascii(text)`` with ``ascii_only``) quoted with
    ``quote``: Python writes ``\'`` in a single-quoted repr and nothing for ``"``."""
    out = []
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char == quote == "'":
            out.append("\\'")
        elif char.isprintable() and not (ascii_only and ord(char) > 0x7F):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def _bytes_escaped(raw: bytes, quote: str) -> str:
    """The inside of ``repr(raw)`` quoted with ``quote``."""
    out = []
    for byte in raw:
        char = chr(byte)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char == quote == "'":
            out.append("\\'")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


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


# Where the client keeps the first bytes of an error's body (client.py's before-parse hook).
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
