"""Server, table and user-mapping options: one registry, parsed into one frozen dataclass.

Each option is one :class:`Option` row: its kind, default, bounds, the places it may be set
(server, foreign table, user mapping) and its doc.  The rows drive three things, so the
three always agree:

* :func:`parse_options`, which validates the flat dict of strings Multicorn hands the
  wrapper (merged from table, server and user mapping; later wins: docs/multicorn.md M2: options
  merge, the user mapping wins) at the first query;
* ``sql/guard.sql``, whose event trigger refuses the same mistakes when the option is
  written, and options in the wrong place (:mod:`cognito_fdw.optiondocs` renders its rule
  table; a unit test keeps the file equal to it: ``python -m cognito_fdw.optiondocs``
  rewrites it);
* the README's options tables, one per :data:`GROUPS` entry (rendered there too; a unit
  test checks they are in README.md).

Every error names the option, shows the bad value (never a secret's) in SQL quoting and
says what to set.  The guard builds the same message from the same row, so a mistake reads
alike whether CREATE/ALTER or the first query finds it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from .errors import THIS_TABLE, OptionError
from .objects import OBJECTS as _TABLES
from .pushdown import BY_ADMIN_GET_USER, BY_LIST_USERS

SERVER, TABLE, USER_MAPPING = "server", "table", "user mapping"
# What an option is for: the README's options tables, one per group, in this order.
CONNECTION, CREDENTIALS, PUSHDOWN, LIMITS, WRITES = (
    "connection", "credentials", "pushdown", "limits", "writes",
)  # fmt: skip
GROUPS = (CONNECTION, CREDENTIALS, PUSHDOWN, LIMITS, WRITES)
OBJECTS = tuple(_TABLES)  # the choices of option object: the table registry's names
DEFAULT_SECRETS_RELATION = "vault.decrypted_secrets"
MAX_OPTION_LENGTH = 2048

# Patterns are written once and matched whole, by Python's re and PostgreSQL's regular
# expressions alike: only syntax both read the same way (no \d, \w or \s, whose meaning
# differs between Unicode and locale rules).
_REGION = r"[a-z]{2}(-[a-z]+)+-[0-9]+"
_NUMBER = r" *[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)? *"
_INTEGER = r" *[+-]?[0-9]+ *"
_CONTROL = "[\x01-\x1f\x7f]"
_BOOLEANS = {"true": True, "on": True, "yes": True, "1": True,
             "false": False, "off": False, "no": False, "0": False}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: what it holds, where it may be set, what it defaults to.

    ``kind`` is ``text`` (stripped), ``secret`` (kept as given, never shown), ``int`` and
    ``float`` (within ``low``..``high``), ``bool``, ``choice`` (one of ``choices``) or
    ``pattern`` (matching ``pattern`` whole).  ``limit`` options may be set on a table too,
    but only to a value no higher than the server's (``default`` when the server has none).
    ``doc`` is a table cell of a sentence or two (the long story is in docs/); ``group``,
    one of :data:`GROUPS`, is the README table it is listed in.
    """

    name: str
    kind: str
    places: tuple[str, ...]
    doc: str
    default: object = None
    shown_default: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    example: str = ""
    limit: bool = False
    group: str = ""

    @property
    def secret(self) -> bool:
        return self.kind == "secret"

    @property
    def text(self) -> str:
        """The doc with a number's range filled in (``{range}``: "1 to 16")."""
        if self.kind not in ("int", "float"):
            return self.doc
        return self.doc.replace("{range}", f"{self.low:g} to {self.high:g}")

    def value_hint(self) -> str:
        """The HINT of an invalid value (also the guard's, through :func:`guard_rules_sql`)."""
        if self.kind == "int":
            return (
                f"Set {self.name} to a whole number from {self.low:g} to {self.high:g} "
                f"(default {self.default:g})."
            )
        if self.kind == "float":
            return (
                f"Set {self.name} to a number of seconds from {self.low:g} to {self.high:g} "
                f"(default {self.default:g})."
            )
        if self.kind == "bool":
            return f"Set {self.name} to 'true' or 'false' (default {str(self.default).lower()})."
        if self.kind == "choice":
            return f"Set {self.name} to one of: {', '.join(self.choices)}."
        return self.example or f"Check the value of {self.name}."


_URL = r"https?://(\[[0-9A-Fa-f:.]+\]|[^][/?#@: ]+)(:[0-9]{1,5})?([/?#][^ ]*)?"
_URL_HINT = (
    "Set {name} to an http:// or https:// URL with a host and no credentials, e.g. "
    "http://127.0.0.1:5000, or remove it to use AWS."
)
_S, _T, _M = (SERVER,), (TABLE,), (SERVER, USER_MAPPING)

REGISTRY: tuple[Option, ...] = (
    Option("user_pool_id", "pattern", _S,
           "Cognito user pool id, e.g. `us-east-1_AbCdEf123` (an emulator's, such as "
           "cognito-local's `local_7DN76x5E`, with `endpoint_url`).",
           shown_default="(required)", pattern=r"[A-Za-z0-9_-]+_[0-9A-Za-z]+",
           example="A user pool id is the region, an underscore and letters or digits, e.g. "
           "us-east-1_AbCdEf123 (the Cognito console shows it on the pool's overview).",
           group=CONNECTION),
    Option("region", "pattern", _S,
           "AWS region of the pool; must match the pool id's prefix.",
           shown_default="the pool id's prefix", pattern=_REGION,
           example="Set region to an AWS region name such as us-east-1 or eu-west-2.",
           group=CONNECTION),
    Option("object", "choice", _T,
           "What the table reads: " + ", ".join(f"`{name}`" for name in OBJECTS[:-1])
           + f" or `{OBJECTS[-1]}`.",
           shown_default="(required)", choices=OBJECTS,
           group=CONNECTION),
    Option("writable", "bool", _T,
           "On `group_members`: `true` lets INSERT and DELETE add and remove members, sent "
           "to Cognito at COMMIT.", default=False,
           group=WRITES),
    Option("deterministic_collations", "bool", _T,
           "`true` asserts that no condition on this table compares under a nondeterministic "
           "collation, so text conditions are pushed anyway; a query that does may miss rows "
           "([Collations](docs/pushdown.md#collations)).", default=False,
           group=PUSHDOWN),
    Option("pushdown", "bool", (SERVER, TABLE),
           "`false` sends no WHERE, LIMIT or join condition to Cognito: every query reads the "
           "whole pool (to compare results).", default=True,
           group=PUSHDOWN),
    Option("aws_access_key_id", "text", _M,
           "Access key id, with `aws_secret_access_key` or `api_key_id`/`api_key_name`; best "
           "in a user mapping.", shown_default="credential chain",
           group=CREDENTIALS),
    Option("aws_secret_access_key", "secret", _M,
           "Secret access key; never shown in any message.",
           group=CREDENTIALS),
    Option("aws_session_token", "secret", _M, "Session token of temporary keys.",
           group=CREDENTIALS),
    Option("api_key_id", "text", _M,
           "Id of the secret holding the secret access key in the secrets relation (Supabase "
           "Vault's name); with `aws_access_key_id`.",
           group=CREDENTIALS),
    Option("api_key_name", "text", _M, "Like `api_key_id`, by the secret's name.",
           group=CREDENTIALS),
    Option("secrets_relation", "text", _S,
           "Relation with columns `id`, `name`, `decrypted_secret` that `api_key_id`/"
           "`api_key_name` read; must be owned by a superuser.",
           default=DEFAULT_SECRETS_RELATION,
           group=CREDENTIALS),
    Option("secrets_conninfo", "secret", _S,
           "libpq connection string for reading the secret over a loopback connection; what "
           "it leaves out (host, port, dbname) is this server's own socket, port and database.",
           shown_default="this database, as the server's OS user",
           group=CREDENTIALS),
    Option("secret_cache_seconds", "float", _S,
           "How long a backend keeps a secret it read, {range} (0 reads it again in every "
           "statement).",
           default=60.0, low=0.0, high=3600.0,
           group=CREDENTIALS),
    Option("aws_profile", "text", _S,
           "A profile of the shared config and credentials files of the server's OS user.",
           group=CREDENTIALS),
    Option("role_arn", "pattern", _M,
           "IAM role to assume with STS on top of the credentials that apply; refreshed "
           "before expiry. In a user mapping only beside that mapping's own keys.",
           pattern=r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+",
           example="Set role_arn to an IAM role ARN, e.g. arn:aws:iam::123456789012:role/reader.",
           group=CREDENTIALS),
    Option("external_id", "secret", _M, "ExternalId for AssumeRole; never shown in messages.",
           group=CREDENTIALS),
    Option("role_session_name", "pattern", _M, "RoleSessionName for AssumeRole.",
           default="cognito-fdw", pattern=r"[A-Za-z0-9_+=,.@-]{2,64}",
           example="Use 2 to 64 letters, digits or any of _+=,.@- (STS's rule).",
           group=CREDENTIALS),
    Option("role_duration_seconds", "int", _M, "AssumeRole DurationSeconds, {range}.",
           default=3600, low=900, high=43200,
           group=CREDENTIALS),
    Option("sts_endpoint_url", "pattern", _S,
           "Another STS endpoint for AssumeRole (a VPC endpoint or an emulator).",
           shown_default="regional STS", pattern=_URL,
           example=_URL_HINT.format(name="sts_endpoint_url"),
           group=CREDENTIALS),
    Option("endpoint_url", "pattern", _S,
           "Another endpoint: an emulator or a VPC endpoint, `http://` or `https://`.",
           shown_default="AWS", pattern=_URL, example=_URL_HINT.format(name="endpoint_url"),
           group=CONNECTION),
    Option("connect_timeout", "float", (SERVER, TABLE),
           "Seconds to wait for a connection, {range}.",
           default=5.0, low=0.1, high=300.0, limit=True,
           group=LIMITS),
    Option("read_timeout", "float", (SERVER, TABLE),
           "Seconds to wait for an answer, {range}.",
           default=15.0, low=0.1, high=900.0, limit=True,
           group=LIMITS),
    Option("max_attempts", "int", (SERVER, TABLE),
           "Attempts per request, retries with backoff and jitter included, {range}.",
           default=5, low=1, high=20, limit=True,
           group=LIMITS),
    Option("request_deadline", "float", (SERVER, TABLE),
           "Seconds one request may take in all, its retries and their backoff included, "
           "{range} ([a stalled endpoint](docs/errors.md#a-stalled-endpoint)).",
           default=30.0, low=0.1, high=900.0, limit=True,
           group=LIMITS),
    Option("retry_mode", "choice", _S,
           "botocore retry mode: `standard` or `adaptive` (adaptive also slows down "
           "client-side when throttled).", default="standard", choices=("standard", "adaptive"),
           group=LIMITS),
    Option("max_requests_per_second", "int", _S,
           "Cap on Cognito requests per second, one budget per account for every connection "
           "of this PostgreSQL server, {range} ([the request-rate cap]"
           "(docs/pushdown.md#the-request-rate-cap)).", default=25, low=1, high=1000,
           group=LIMITS),
    Option("username_lookup", "choice", _S,
           "How `username =`, `username IN` and joins on username find a user: `list_users` "
           "(ListUsers, not billed) or `admin_get_user` (AdminGetUser, billed as a monthly "
           "active user: [Billing](docs/pushdown.md#billing-admingetuser-counts-users-as-"
           "monthly-active)).",
           default=BY_LIST_USERS, choices=(BY_LIST_USERS, BY_ADMIN_GET_USER),
           group=PUSHDOWN),
    Option("scan_workers", "int", (SERVER, TABLE),
           "Threads per scan that read a large pool in 16 parts by `sub` prefix and run the "
           "lookups of an IN list, {range}.",
           default=8, low=1, high=16, limit=True,
           group=LIMITS),
    Option("cache_ttl", "float", (SERVER, TABLE),
           "Seconds a repeated request is answered from the cache all connections of the "
           "server share, {range} (0: none): docs/hot-paths.md.",
           default=10.0, low=0.0, high=3600.0, limit=True,
           group=PUSHDOWN),
    Option("max_requests_per_statement", "int", (SERVER, TABLE),
           "Cognito requests one statement may send, {range}: a plan needing more fails "
           "before sending, a statement reaching it stops (docs/hot-paths.md).",
           default=1000, low=1, high=100000, limit=True,
           group=LIMITS),
    Option("max_scans_per_statement", "int", (SERVER, TABLE),
           "Scans of one table a statement may make, {range}: a join's inner side is "
           "scanned once per outer row, and each scan keeps memory in Multicorn until the "
           "statement ends ([a budget per statement](docs/hot-paths.md#a-budget-per-statement)).",
           default=10000, low=1, high=100000, limit=True,
           group=LIMITS),
    Option("describe_ttl", "float", _S,
           "Seconds a connection caches DescribeUserPool (the planner's user count, custom "
           "attributes), {range}.", default=300.0, low=0.0, high=86400.0,
           group=PUSHDOWN),
)  # fmt: skip
OPTIONS = {row.name: row for row in REGISTRY}
KNOWN_OPTIONS = frozenset(OPTIONS)
SECRET_OPTIONS = tuple(row.name for row in REGISTRY if row.secret)
# Options whose values no error message shows: the secrets, and the access key id (it
# names the account's key; scrubbing.scrub also blanks anything shaped like one).
UNSHOWN_OPTIONS = (*SECRET_OPTIONS, "aws_access_key_id")
USER_MAPPING_OPTIONS = tuple(row.name for row in REGISTRY if USER_MAPPING in row.places)


# The parsed options: a frozen dataclass whose fields are the registry's rows, in order
# (parse_options fills every one, a default where none was given); an unshown value is
# left out of its repr.
Options = dataclasses.make_dataclass(
    "Options",
    [
        (
            row.name,
            {"int": "int", "float": "float", "bool": "bool"}.get(row.kind, "str | None"),
            dataclasses.field(repr=row.name not in UNSHOWN_OPTIONS),
        )
        for row in REGISTRY
    ],
    frozen=True,
    namespace={
        "__module__": __name__,
        "__doc__": "The parsed options: one field per REGISTRY row (parse_options).",
    },
)


def shown(value: str) -> str:
    """A value as a message shows it: SQL-quoted (the guard quotes alike)."""
    return "'" + value.replace("'", "''") + "'"


def closest(name: str, known) -> str | None:
    """The known name nearest to a misspelled one (Levenshtein distance at most a third of
    its length, and at least 2), first in alphabetical order on a tie; the guard's
    ``closest()`` is the same rule."""
    best = None
    for candidate in sorted(known):
        distance = _levenshtein(name, candidate)
        if distance <= max(2, len(name) // 3) and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best and best[1]


def nearest(name: str, known, count: int = 3) -> list[str]:
    """The ``count`` known names nearest to ``name`` (Levenshtein distance, then alphabet)."""
    return sorted(known, key=lambda candidate: (_levenshtein(name, candidate), candidate))[:count]


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def unknown_error(names, known, place_words: str = "") -> OptionError:
    """The error for options no one knows, each with its likely meaning."""
    names = sorted(names)
    parts = []
    for name in names:
        near = closest(name, known)
        parts.append(f"{name} (did you mean {near}?)" if near else name)
    return OptionError(
        f"unknown option{'s' if len(names) > 1 else ''}: {', '.join(parts)}",
        hint="Valid options: " + ", ".join(sorted(known)) + ". Remove or rename the option "
        f"on the {place_words or 'server, foreign table or user mapping'}.",
    )


def check_value(row: Option, raw: str):
    """The value of one option, parsed; :class:`OptionError` if it is not one."""
    if len(raw) > MAX_OPTION_LENGTH:
        raise OptionError(
            f"option {row.name} is {len(raw)} characters long",
            hint=f"Options are at most {MAX_OPTION_LENGTH} characters; check the value.",
        )
    if re.search(_CONTROL, raw):
        # Never shown: a stray newline in a pasted key would put the key in the message.
        raise OptionError(
            f"option {row.name} holds a control character (a newline, tab, ...)",
            hint=f"Set {row.name} again without it; a value pasted with E'...\\n' or from a "
            "file often ends in a newline.",
        )
    if row.secret:
        return raw or None
    value = raw.strip(" ")
    if value == "":
        raise OptionError(f"option {row.name} is empty", hint=f"Set {row.name} or remove it.")
    ok = {
        "text": lambda: True,
        "int": lambda: re.fullmatch(_INTEGER, value) and row.low <= int(value) <= row.high,
        "float": lambda: re.fullmatch(_NUMBER, value) and row.low <= float(value) <= row.high,
        "bool": lambda: value.lower() in _BOOLEANS,
        "choice": lambda: value in row.choices,
        "pattern": lambda: re.fullmatch(row.pattern, value),
    }[row.kind]()
    if not ok:
        raise OptionError(f"invalid value for option {row.name}: {shown(value)}",
                          hint=row.value_hint())  # fmt: skip
    return {
        "int": lambda: int(value),
        "float": lambda: float(value),
        "bool": lambda: _BOOLEANS[value.lower()],
    }.get(row.kind, lambda: value)()


def parse_options(opts: Mapping[str, str]) -> Options:
    """Validate Multicorn's merged option dict; raise :class:`OptionError` on any problem."""
    unknown = [name for name in opts if name not in OPTIONS]
    if unknown:
        raise unknown_error(unknown, KNOWN_OPTIONS)
    given = {name: check_value(OPTIONS[name], raw) for name, raw in opts.items()}
    values = {row.name: given.get(row.name, row.default) for row in REGISTRY}
    _check_combinations(values, given)
    pool_region = _pool_region(values["user_pool_id"])
    values["region"] = values["region"] or pool_region
    if values["region"] is None:
        raise OptionError(
            f"option region is needed for user pool {values['user_pool_id']}",
            hint="The pool id does not start with an AWS region (an emulator's pool): set "
            "region to the one the endpoint expects, e.g. OPTIONS (ADD region 'us-east-1').",
        )
    if pool_region is not None and pool_region != values["region"]:
        raise OptionError(
            f"user pool {values['user_pool_id']} is in region {pool_region}, but option region "
            f"is {shown(values['region'])}",
            hint=f"Set region to {shown(pool_region)} (or drop it: it defaults to the pool id's "
            "region), or correct user_pool_id.",
        )
    if not values["object"]:
        raise OptionError(
            "missing option object",
            hint=f"Set object on the foreign table to one of: {', '.join(OBJECTS)}, "
            f"e.g. ALTER FOREIGN TABLE {THIS_TABLE} OPTIONS (ADD object '{OBJECTS[0]}').",
        )
    return Options(**values)


def _pool_region(pool_id: str) -> str | None:
    """The region a pool id starts with, or None for an emulator's id (``local_x``)."""
    prefix = pool_id.rpartition("_")[0]
    return prefix if re.fullmatch(_REGION, prefix) else None


def _check_combinations(values: dict, given: dict) -> None:
    """What no single option shows: the options that go together."""
    if values["user_pool_id"] is None:
        raise OptionError(
            "missing option user_pool_id",
            hint="Set user_pool_id on the server, e.g. OPTIONS (ADD user_pool_id "
            "'us-east-1_AbCdEf123'); the Cognito console shows it on the pool's overview.",
        )
    if values["api_key_id"] and values["api_key_name"]:
        raise OptionError(
            "options api_key_id and api_key_name are both set",
            hint="Name the secret once: keep api_key_id or api_key_name, drop the other.",
        )
    key_id, secret = values["aws_access_key_id"], values["aws_secret_access_key"]
    vault = values["api_key_id"] or values["api_key_name"]
    if key_id is None and (secret is not None or vault is not None):
        raise OptionError(
            "missing option aws_access_key_id",
            hint="The secret access key needs its key id: set aws_access_key_id beside "
            "aws_secret_access_key, api_key_id or api_key_name.",
        )
    if key_id is not None and secret is None and vault is None:
        raise OptionError(
            "missing option aws_secret_access_key",
            hint="Set aws_access_key_id and aws_secret_access_key together (best in a user "
            "mapping), or api_key_id/api_key_name to read the secret key from a secrets "
            "table, or neither to use the server's AWS credential chain.",
        )
    if values["aws_session_token"] is not None and secret is None:
        raise OptionError(
            "option aws_session_token needs aws_access_key_id and aws_secret_access_key",
            hint="Temporary credentials are three values: set all three in the user mapping.",
        )
    if values["role_arn"] is None:
        for name in ("external_id", "role_session_name", "role_duration_seconds"):
            if name in given:
                raise OptionError(
                    f"option {name} needs role_arn",
                    hint=f"Set role_arn to the role to assume, or drop {name}.",
                )
