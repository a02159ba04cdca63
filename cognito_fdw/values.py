"""Values from Cognito into PostgreSQL's input text: the kinds of value, the families of
column types, which family holds which kind, and the renderers (pure).

Multicorn passes every value through the column type's input function as text (docs/multicorn.md M1:
every key of a row is converted), so the renderers produce text (or values whose ``str()`` is the
right text); a value PostgreSQL would refuse is refused here (:class:`Unfit`), so the error can name
the column and the user.  :mod:`columns` decides which kind each column reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

# Value kinds: what the source holds.
STRING = "string"
BOOLEAN = "boolean"  # "true"/"false" attribute strings, or the record's Enabled bool
NUMBER = "number"  # decimal strings
EPOCH = "epoch"  # the standard attribute updated_at: seconds since 1970 as a string
INSTANT = "instant"  # an aware datetime from the API (UserCreateDate, ...)
DATETIME = "datetime"  # a custom DateTime attribute: a string as the app wrote it
JSON = "json"  # a Python object to serialise
JSON_TEXT = "json_text"  # a string that already holds JSON (identities)

# Type families, from ColumnDefinition.base_type_name (:func:`type_family`).  Text types
# hold any value; of those, only the exact ones compare as Cognito does (byte for byte: not
# citext, which folds case, nor char(n), which pads).
TEXT_TYPES = frozenset(
    {"text", "character varying", "character", "varchar", "bpchar", "citext", "name"}
)
EXACT_TEXT_TYPES = frozenset({"text", "character varying", "varchar"})
BOOLEAN_TYPES = frozenset({"boolean", "bool"})
_NUMERIC = {"smallint", "integer", "bigint", "numeric", "real", "double precision", "int2",
            "int4", "int8", "float4", "float8", "decimal"}  # fmt: skip
_INTEGER = {"smallint", "integer", "bigint", "int2", "int4", "int8"}
# PostgreSQL's integer ranges, by the name it gives the type in messages.
_INTEGER_RANGES = {
    "smallint": 2**15, "int2": 2**15, "integer": 2**31, "int4": 2**31, "bigint": 2**63,
    "int8": 2**63,
}  # fmt: skip
_TIMESTAMP = {"timestamp without time zone", "timestamp"}
_TIMESTAMPTZ = {"timestamp with time zone", "timestamptz"}
_JSON = {"json", "jsonb"}
_KNOWN = (
    TEXT_TYPES | BOOLEAN_TYPES | _NUMERIC | _TIMESTAMP | _TIMESTAMPTZ | _JSON | {"uuid", "date"}
)

# Which declared types can hold each kind (text types hold everything).
_ACCEPTS = {
    STRING: {"uuid"},
    BOOLEAN: BOOLEAN_TYPES,
    NUMBER: _NUMERIC,
    EPOCH: _NUMERIC | _TIMESTAMP | _TIMESTAMPTZ | {"date"},
    INSTANT: _TIMESTAMP | _TIMESTAMPTZ | {"date"},
    DATETIME: _TIMESTAMP | _TIMESTAMPTZ | {"date"},
    JSON: _JSON,
    JSON_TEXT: _JSON,
}


class Unfit(Exception):
    """A renderer's refusal of one value, in PostgreSQL's words."""


TYPE_HINT = (
    "Cognito holds a value that the column's type cannot: declare {column} as text (or a "
    "type that holds every value of the attribute) with ALTER FOREIGN TABLE ... ALTER COLUMN."
)


def family(type_name: str) -> str:
    """A type name's family: ``varchar(20)`` -> ``varchar``, any array -> ``array``."""
    name = type_name.lower()
    if name.endswith("[]"):
        return "array"
    return name.split("(")[0].strip()


def _utc(value: datetime) -> datetime:
    # botocore returns aware datetimes in the server process's local zone (tzlocal), which
    # is not the session's TimeZone: normalise to UTC before anything is rendered.
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _epoch(value: str) -> datetime:
    return datetime.fromtimestamp(float(value), tz=timezone.utc)


def type_family(definition) -> str:
    """The family of a Multicorn ColumnDefinition's type (of a domain: its own name)."""
    return family(definition.base_type_name or definition.type_name)


def renderer(kind: str, family: str) -> Callable[[object], object]:
    """How a value of ``kind`` becomes the input text of a column of ``family``."""
    timestamp = family in _TIMESTAMP
    if kind == INSTANT:
        # timestamp holds UTC wall time; timestamptz gets an explicit +00:00 offset, so
        # the instant is right whatever the session TimeZone.
        if timestamp:
            return lambda v: _utc(v).replace(tzinfo=None).isoformat()
        return lambda v: _utc(v).isoformat()
    if kind == EPOCH and (timestamp or family in _TIMESTAMPTZ or family == "date"):
        if timestamp:
            return lambda v: _render_epoch(v, naive=True)
        return lambda v: _render_epoch(v, naive=False)
    if kind == BOOLEAN:
        return _render_bool
    if kind == JSON:
        return lambda v: json.dumps(v, ensure_ascii=False, default=str)
    if kind == JSON_TEXT and family in _JSON:
        return _render_json_text
    if kind == NUMBER and family in _INTEGER:
        return lambda v: _render_integer(v, family)
    if family in _JSON:  # a string attribute into json: a JSON string
        return lambda v: json.dumps(v, ensure_ascii=False)
    if family not in TEXT_TYPES:
        return lambda v: _render_checked(v, family)
    return str


def _render_checked(value, family: str) -> str:
    # A type whose input function PostgreSQL runs on the text (uuid, numeric, a timestamp,
    # an enum, inet, interval, an extension's type) quotes a value it refuses in its own
    # error, as it is: a self-service user's newline, ANSI escape and forged "HINT:" line
    # reached the client and the server log.  A value with a character that is not
    # printable is refused here, where the message is escaped and names the column (the
    # rare enum label or extension value that holds one too: declare the column text).
    text = str(value)
    if not all(char.isprintable() or char == " " for char in text):
        raise Unfit(f'invalid input syntax for type {family}: "{value}"')
    return text


def _render_bool(value) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    # Cognito stores "true"/"false"; anything else is not a boolean, so it is NULL rather
    # than an error that would stop the whole scan.
    return text if text in ("true", "false") else None


def _render_epoch(value, naive: bool):
    try:
        instant = _epoch(value)
    except (ValueError, OverflowError, OSError):
        return None
    return instant.replace(tzinfo=None).isoformat() if naive else instant.isoformat()


def _render_json_text(value):
    try:
        parsed = json.loads(value)
    except ValueError:
        return json.dumps(value, ensure_ascii=False)
    if "\\u0000" in value:  # an escaped NUL, which jsonb refuses: see without_nul
        return json.dumps(without_nul(parsed), ensure_ascii=False)
    return value


# PostgreSQL's text and jsonb cannot hold U+0000: Multicorn passes a value as a C string, so a NUL
# cut it short silently, and jsonb refused the \u0000 of a JSON string, which failed every query
# reading the column (count(*) reads them all: docs/multicorn.md M1: every key of a row is
# converted).  Cognito accepts it in attribute values, so it is shown as U+FFFD, the replacement
# character.
NUL, NUL_SHOWN_AS = "\x00", "\ufffd"


def without_nul(raw):
    """``raw`` (a string, or the JSON-able value of a JSON column) with every NUL in its
    strings, keys included, replaced by U+FFFD."""
    if isinstance(raw, str):
        return raw.replace(NUL, NUL_SHOWN_AS) if NUL in raw else raw
    if isinstance(raw, dict):
        return {without_nul(k): without_nul(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return [without_nul(v) for v in raw]
    return raw


def _render_integer(value, family: str):
    # An integer column takes "12" but not "12.0": render integral decimals as integers.
    # What PostgreSQL would refuse is refused here, to name the column and the user.
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        raise Unfit(f'invalid input syntax for type {family}: "{value}"')
    limit = _INTEGER_RANGES[family]
    if not -limit <= number < limit:
        raise Unfit(f'value "{value}" is out of range for type {family}')
    return str(int(number))


def _accepts(kind: str, family: str) -> bool:
    # A type not known here (an enum, an extension's type, interval, inet, ...) may take a
    # string, which its input function checks; never a number, a time or JSON, which the
    # known types hold.
    unknown = family not in _KNOWN | {"array"}
    return family in TEXT_TYPES or family in _ACCEPTS.get(kind, ()) or (unknown and kind == STRING)


def type_problem(name: str, type_name: str, kind: str, family: str, uuid_ok: bool) -> str | None:
    """Why a column of this type cannot hold values of this kind, or None when it can."""
    if _accepts(kind, family) and (family != "uuid" or uuid_ok):
        return None
    words, suggestion = _KIND_TEXT[kind]
    return f"{name}: type {type_name} cannot hold {words}; use {suggestion}"


# What each kind of value is, and the column types that hold it, for error messages.
_KIND_TEXT = {
    STRING: ("a string", "text (or uuid for sub)"),
    BOOLEAN: ("a boolean", "boolean or text"),
    NUMBER: ("a number", "numeric, an integer type or text"),
    EPOCH: ("seconds since 1970", "bigint, timestamptz or text"),
    INSTANT: ("a timestamp", "timestamptz, timestamp (UTC) or text"),
    DATETIME: ("a date and time", "timestamptz or text"),
    JSON: ("a JSON value", "jsonb, json or text"),
    JSON_TEXT: ("JSON text", "jsonb or text"),
}
