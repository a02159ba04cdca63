"""Server, table and user-mapping options into one frozen dataclass.

Multicorn hands the wrapper one flat dict of strings, merged from the foreign table, the
server and the user mapping (later wins).  :func:`parse_options` validates it once; every
error names the option, shows the bad value (never a secret's) and says what to set.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from .errors import OptionError

OBJECTS = ("users", "groups", "group_members")

_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
# The API's own pattern for UserPoolId is [\w-]+_[0-9a-zA-Z]+; its prefix is the region.
_POOL_RE = re.compile(r"^([a-z]{2}(?:-[a-z]+)+-\d+)_[0-9a-zA-Z]+$")
_MAX_OPTION_LENGTH = 2048

SECRET_OPTIONS = ("aws_secret_access_key", "aws_session_token", "external_id", "secrets_conninfo")
# The options a user mapping may carry (sql/guard.sql holds the same list): credentials the
# mapped role brings itself, never where requests go or whose credentials the server lends.
USER_MAPPING_OPTIONS = (
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "api_key_id",
    "api_key_name",
    "role_arn",
    "external_id",
    "role_session_name",
    "role_duration_seconds",
)
DEFAULT_SECRETS_RELATION = "vault.decrypted_secrets"
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")


@dataclasses.dataclass(frozen=True)
class Options:
    user_pool_id: str
    region: str
    object: str = "users"
    endpoint_url: str | None = None
    aws_access_key_id: str | None = dataclasses.field(default=None, repr=False)
    aws_secret_access_key: str | None = dataclasses.field(default=None, repr=False)
    aws_session_token: str | None = dataclasses.field(default=None, repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    max_attempts: int = 5
    retry_mode: str = "standard"
    api_key_id: str | None = None
    api_key_name: str | None = None
    secrets_relation: str = DEFAULT_SECRETS_RELATION
    secrets_conninfo: str | None = dataclasses.field(default=None, repr=False)
    secret_cache_seconds: float = 60.0
    aws_profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = dataclasses.field(default=None, repr=False)
    role_session_name: str = "cognito-fdw"
    role_duration_seconds: int = 3600
    sts_endpoint_url: str | None = None
    writable: bool = False
    pushdown: bool = True
    max_requests_per_second: int = 25
    scan_workers: int = 4
    describe_ttl: float = 300.0

    def secrets(self) -> tuple[str, ...]:
        """Every value that must never appear in a message."""
        values = (
            self.aws_secret_access_key,
            self.aws_session_token,
            self.external_id,
            self.secrets_conninfo,
        )
        return tuple(v for v in values if v)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    name: str
    description: str
    default: str = ""


# The README's options table is generated from (and tested against) this list.
OPTION_SPECS = (
    OptionSpec("user_pool_id", "Cognito user pool id, e.g. `us-east-1_AbCdEf123` (required)."),
    OptionSpec(
        "region", "AWS region of the pool; defaults to the pool id's prefix.", "from pool id"
    ),
    OptionSpec(
        "object",
        "Table option: which Cognito object the table reads: `users`, `groups` or `group_members`.",
        "(required)",
    ),
    OptionSpec(
        "writable",
        "Table option of `group_members`: `true` lets INSERT and DELETE add and remove "
        "members, sent to Cognito at COMMIT.",
        "false",
    ),
    OptionSpec(
        "aws_access_key_id",
        "Access key id; use with `aws_secret_access_key`, best in a user mapping.",
        "credential chain",
    ),
    OptionSpec("aws_secret_access_key", "Secret access key (never shown in messages).", ""),
    OptionSpec("aws_session_token", "Session token for temporary keys.", ""),
    OptionSpec(
        "api_key_id",
        "Id of the secret holding the secret access key in the secrets relation (Supabase "
        "Vault's option name); use with `aws_access_key_id`.",
        "",
    ),
    OptionSpec("api_key_name", "Like `api_key_id`, but the secret's name.", ""),
    OptionSpec(
        "secrets_relation",
        "Relation with columns `id`, `name`, `decrypted_secret` that `api_key_id`/`api_key_name` "
        "read; must be owned by a superuser. Server only (the guard refuses it elsewhere).",
        DEFAULT_SECRETS_RELATION,
    ),
    OptionSpec(
        "secrets_conninfo",
        "libpq connection string for reading the secret over a loopback connection; what it "
        "leaves out (host, port, dbname) is the server's own socket, port and database. "
        "Server only (the guard refuses it elsewhere).",
        "this database, as the server's OS user",
    ),
    OptionSpec(
        "secret_cache_seconds",
        "How long a backend keeps a secret it read (0 to 3600; 0 reads it again in every "
        "statement).",
        "60",
    ),
    OptionSpec(
        "aws_profile",
        "Profile in the shared config and credentials files of the server's OS user; server "
        "only (the guard refuses it elsewhere).",
        "",
    ),
    OptionSpec(
        "role_arn",
        "IAM role to assume with STS on top of the credentials above; refreshed before expiry.",
        "",
    ),
    OptionSpec("external_id", "ExternalId for AssumeRole (never shown in messages).", ""),
    OptionSpec("role_session_name", "RoleSessionName for AssumeRole.", "cognito-fdw"),
    OptionSpec("role_duration_seconds", "AssumeRole DurationSeconds (900 to 43200).", "3600"),
    OptionSpec(
        "sts_endpoint_url",
        "Another STS endpoint for AssumeRole (a VPC endpoint or an emulator); server only.",
        "regional STS",
    ),
    OptionSpec(
        "endpoint_url",
        "Another endpoint: an emulator or a VPC endpoint (`http://` or `https://`).",
        "AWS",
    ),
    OptionSpec("connect_timeout", "Seconds to wait for a connection (0.1 to 300).", "5"),
    OptionSpec("read_timeout", "Seconds to wait for an answer (0.1 to 900).", "15"),
    OptionSpec(
        "max_attempts",
        "Attempts per request, retries included, with backoff and jitter (1 to 20).",
        "5",
    ),
    OptionSpec(
        "retry_mode",
        "botocore retry mode: `standard` or `adaptive` (adaptive also "
        "slows down client-side when throttled).",
        "standard",
    ),
    OptionSpec(
        "pushdown",
        "`false` sends no WHERE, LIMIT or join condition to Cognito: every query reads the "
        "whole pool (for comparing results, or a pool whose matching is unusual).",
        "true",
    ),
    OptionSpec(
        "max_requests_per_second",
        "Client-side cap on Cognito requests per second, per database connection, shared by "
        "its scan workers (1 to 1000); Cognito's ListUsers quota is 30/s per account.",
        "25",
    ),
    OptionSpec(
        "scan_workers",
        "Threads per scan that read a large pool in 16 parts by `sub` prefix, and run the "
        "lookups of an IN list (1 to 16; 1 sends one request at a time).",
        "4",
    ),
    OptionSpec(
        "describe_ttl",
        "Seconds to cache DescribeUserPool (the planner's user count, custom attributes) per "
        "connection (0 to 86400).",
        "300",
    ),
)
KNOWN_OPTIONS = frozenset(spec.name for spec in OPTION_SPECS)


def _float(opts: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = opts.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise OptionError(
            f"invalid value for option {name}: {raw!r}",
            hint=f"Set {name} to a number of seconds from {low:g} to {high:g} "
            f"(default {default:g}).",
        )
    return value


def _int(opts: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = opts.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise OptionError(
            f"invalid value for option {name}: {raw!r}",
            hint=f"Set {name} to a whole number from {low} to {high} (default {default}).",
        )
    return value


def _choice(opts: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None):
    raw = opts.get(name)
    if raw is None:
        if default is None:
            raise OptionError(
                f"missing option {name}",
                hint=f"Set {name} on the foreign table to one of: {', '.join(choices)}, "
                f"e.g. OPTIONS ({name} '{choices[0]}').",
            )
        return default
    if raw not in choices:
        raise OptionError(
            f"invalid value for option {name}: {raw!r}",
            hint=f"Set {name} to one of: {', '.join(choices)}.",
        )
    return raw


def _bool(opts: Mapping[str, str], name: str, default: bool) -> bool:
    raw = opts.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("true", "on", "yes", "1"):
        return True
    if value in ("false", "off", "no", "0"):
        return False
    raise OptionError(
        f"invalid value for option {name}: {raw!r}",
        hint=f"Set {name} to 'true' or 'false' (default {'true' if default else 'false'}).",
    )


def check_known(opts: Mapping[str, str], known: frozenset[str]) -> None:
    """Refuse options the wrapper does not know, suggesting the closest known name."""
    unknown = sorted(k for k in opts if k not in known)
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise OptionError(
        f"unknown option{'s' if len(unknown) > 1 else ''}: {', '.join(parts)}",
        hint="Valid options: " + ", ".join(sorted(known)) + ". Remove or rename the option "
        "on the server, foreign table or user mapping.",
    )


def parse_options(opts: Mapping[str, str]) -> Options:
    """Validate Multicorn's merged option dict; raise :class:`OptionError` on any problem."""
    check_known(opts, KNOWN_OPTIONS)
    for name, raw in opts.items():
        if len(raw) > _MAX_OPTION_LENGTH:
            raise OptionError(
                f"option {name} is {len(raw)} characters long",
                hint=f"Options are at most {_MAX_OPTION_LENGTH} characters; check the value.",
            )
        if raw.strip() == "" and name not in SECRET_OPTIONS:
            raise OptionError(f"option {name} is empty", hint=f"Set {name} or remove it.")

    pool_id = opts.get("user_pool_id")
    if pool_id is None:
        raise OptionError(
            "missing option user_pool_id",
            hint="Set user_pool_id on the server, e.g. OPTIONS (ADD user_pool_id "
            "'us-east-1_AbCdEf123'); the Cognito console shows it on the pool's overview.",
        )
    pool_id = pool_id.strip()
    match = _POOL_RE.match(pool_id)
    if not match:
        raise OptionError(
            f"invalid value for option user_pool_id: {pool_id!r}",
            hint="A user pool id is the region, an underscore and letters or digits, "
            "e.g. us-east-1_AbCdEf123.",
        )
    region = (opts.get("region") or match.group(1)).strip()
    if not _REGION_RE.match(region):
        raise OptionError(
            f"invalid value for option region: {region!r}",
            hint="Set region to an AWS region name such as us-east-1 or eu-west-2.",
        )
    if match.group(1) != region:
        raise OptionError(
            f"user pool {pool_id} is in region {match.group(1)}, but option region is {region!r}",
            hint=f"Set region to {match.group(1)!r} (or drop it: it defaults to the pool id's "
            "region), or correct user_pool_id.",
        )

    endpoint = _url(opts, "endpoint_url")

    key_id = opts.get("aws_access_key_id")
    secret = opts.get("aws_secret_access_key")
    token = opts.get("aws_session_token")
    vault_ref = opts.get("api_key_id") or opts.get("api_key_name")
    if "api_key_id" in opts and "api_key_name" in opts:
        raise OptionError(
            "options api_key_id and api_key_name are both set",
            hint="Name the secret once: keep api_key_id or api_key_name, drop the other.",
        )
    if key_id is None and (secret is not None or vault_ref is not None):
        raise OptionError(
            "missing option aws_access_key_id",
            hint="The secret access key needs its key id: set aws_access_key_id beside "
            "aws_secret_access_key, api_key_id or api_key_name.",
        )
    if key_id is not None and secret is None and vault_ref is None:
        raise OptionError(
            "missing option aws_secret_access_key",
            hint="Set aws_access_key_id and aws_secret_access_key together (best in a user "
            "mapping), or api_key_id/api_key_name to read the secret key from a secrets "
            "table, or neither to use the server's AWS credential chain.",
        )
    if token is not None and secret is None:
        raise OptionError(
            "option aws_session_token needs aws_access_key_id and aws_secret_access_key",
            hint="Temporary credentials are three values: set all three in the user mapping.",
        )
    role_arn = opts.get("role_arn")
    if role_arn is not None and not _ROLE_ARN_RE.match(role_arn.strip()):
        raise OptionError(
            f"invalid value for option role_arn: {role_arn!r}",
            hint="Set role_arn to an IAM role ARN, e.g. arn:aws:iam::123456789012:role/reader.",
        )
    for name in ("external_id", "role_session_name", "role_duration_seconds"):
        if name in opts and role_arn is None:
            raise OptionError(
                f"option {name} needs role_arn",
                hint=f"Set role_arn to the role to assume, or drop {name}.",
            )
    session_name = opts.get("role_session_name", "cognito-fdw").strip()
    if not _SESSION_NAME_RE.match(session_name):
        raise OptionError(
            f"invalid value for option role_session_name: {session_name!r}",
            hint="Use 2 to 64 letters, digits or any of _+=,.@- (STS's rule).",
        )

    return Options(
        user_pool_id=pool_id,
        region=region,
        object=_choice(opts, "object", OBJECTS, None),
        endpoint_url=endpoint,
        aws_access_key_id=key_id.strip() if key_id else None,
        aws_secret_access_key=secret or None,
        aws_session_token=token or None,
        connect_timeout=_float(opts, "connect_timeout", 5.0, 0.1, 300.0),
        read_timeout=_float(opts, "read_timeout", 15.0, 0.1, 900.0),
        max_attempts=_int(opts, "max_attempts", 5, 1, 20),
        retry_mode=_choice(opts, "retry_mode", ("standard", "adaptive"), "standard"),
        api_key_id=_stripped(opts, "api_key_id"),
        api_key_name=_stripped(opts, "api_key_name"),
        secrets_relation=opts.get("secrets_relation", DEFAULT_SECRETS_RELATION).strip(),
        secrets_conninfo=opts.get("secrets_conninfo") or None,
        secret_cache_seconds=_float(opts, "secret_cache_seconds", 60.0, 0.0, 3600.0),
        aws_profile=_stripped(opts, "aws_profile"),
        role_arn=_stripped(opts, "role_arn"),
        external_id=opts.get("external_id") or None,
        role_session_name=session_name,
        role_duration_seconds=_int(opts, "role_duration_seconds", 3600, 900, 43200),
        sts_endpoint_url=_url(opts, "sts_endpoint_url"),
        writable=_bool(opts, "writable", False),
        pushdown=_bool(opts, "pushdown", True),
        max_requests_per_second=_int(opts, "max_requests_per_second", 25, 1, 1000),
        scan_workers=_int(opts, "scan_workers", 4, 1, 16),
        describe_ttl=_float(opts, "describe_ttl", 300.0, 0.0, 86400.0),
    )


def _stripped(opts: Mapping[str, str], name: str) -> str | None:
    raw = opts.get(name)
    return raw.strip() if raw is not None else None


def _url(opts: Mapping[str, str], name: str) -> str | None:
    raw = opts.get(name)
    if raw is None:
        return None
    url = raw.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise OptionError(
            f"invalid value for option {name}: {url!r}",
            hint=f"Set {name} to an http:// or https:// URL with a host and no "
            "credentials, e.g. http://127.0.0.1:5000, or remove it to use AWS.",
        )
    return url
