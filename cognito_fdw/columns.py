"""The column registry: what each column reads, and which PostgreSQL types may hold it.

One registry drives row mapping, column validation, IMPORT FOREIGN SCHEMA's types and the
README's column tables.  An object whose rows are API records (a group, the user pool)
lists its columns as :class:`Field` rows (``groups.GROUP_COLUMNS``,
``user_pool.POOL_COLUMNS``), resolved by :func:`resolve_fields`.  The columns of ``users``
are resolved by :func:`resolve_columns`, once per wrapper instance, against the PostgreSQL
type the user declared:

* built-in columns (``username``, ``status``, ``enabled``, ``created_at``, ``updated_at``,
  ``attributes``, ``mfa_options``) read the user record itself;
* a column named like a standard attribute reads that attribute;
* a column option ``attribute 'custom:tenant'`` reads any attribute;
* any other name ``x`` reads ``custom:x`` when the pool's schema has it.

How a value becomes a column's text is :mod:`values`' part.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

from .errors import THIS_TABLE, ColumnError
from .values import (
    BOOLEAN,
    DATETIME,
    EPOCH,
    INSTANT,
    JSON,
    JSON_TEXT,
    NUMBER,
    STRING,
    TYPE_HINT,
    Unfit,
    renderer,
    type_family,
    type_problem,
    without_nul,
)

# character varying(n) and character(n): PostgreSQL's input functions cut what is over the
# length when it is all spaces, and refuse anything else (SQLSTATE 22001).
_LENGTH_TYPE = re.compile(
    r"(character varying|varchar|character|char|bpchar)\s*\(\s*([0-9]+)\s*\)", re.IGNORECASE
)

STANDARD_ATTRIBUTES = {
    "address": STRING,
    "birthdate": STRING,
    "email": STRING,
    "email_verified": BOOLEAN,
    "family_name": STRING,
    "gender": STRING,
    "given_name": STRING,
    "locale": STRING,
    "middle_name": STRING,
    "name": STRING,
    "nickname": STRING,
    "phone_number": STRING,
    "phone_number_verified": BOOLEAN,
    "picture": STRING,
    "preferred_username": STRING,
    "profile": STRING,
    "sub": STRING,
    "updated_at": EPOCH,
    "website": STRING,
    "zoneinfo": STRING,
    "identities": JSON_TEXT,
}

# The PostgreSQL type IMPORT FOREIGN SCHEMA declares for each kind (a Field may differ).
IMPORT_TYPES = {
    STRING: "text",
    BOOLEAN: "boolean",
    NUMBER: "numeric",
    EPOCH: "timestamp with time zone",
    INSTANT: "timestamp with time zone",
    DATETIME: "timestamp with time zone",
    JSON: "jsonb",
    JSON_TEXT: "jsonb",
}


@dataclasses.dataclass(frozen=True)
class Field:
    """A column that reads one field of an API record: the field, the kind of its value, a
    doc (the README's words), and the type IMPORT FOREIGN SCHEMA declares (by default
    :data:`IMPORT_TYPES` of the kind)."""

    field: str
    kind: str
    doc: str
    type_name: str = ""

    @property
    def imported_type(self) -> str:
        return self.type_name or IMPORT_TYPES[self.kind]


@dataclasses.dataclass(frozen=True)
class Searchable:
    """A column of users that Cognito's ListUsers ``Filter`` can search (see pushdown.py):
    the column's name as the docs and the refusal list it, its selectivity ``rank`` (lower
    is pushed first), the users each value finds (``per_value``) or, for a status, the
    share of the pool it finds (one in ``share``), the user record's ``field`` it reads
    (None: the attribute of the filter's name), whether a join may look users up by it
    (``path_key``), whether every user has it (``never_null``), and whether a LIKE prefix is
    searched (``like``)."""

    column: str
    rank: int
    per_value: int = 1
    share: int | None = None
    field: str | None = None
    path_key: bool = False
    never_null: bool = False
    like: bool = True


# The filter attributes Cognito's ListUsers searches, by attribute: a new pushable column
# is one row here.  The Enabled flag's attribute is "status" (its column: enabled).
SEARCHABLE = {
    "username": Searchable("username", 0, 1, field="Username", path_key=True, never_null=True),
    "sub": Searchable("sub", 0, 1, path_key=True, never_null=True),
    "email": Searchable("email", 1, 2, path_key=True),
    "phone_number": Searchable("phone_number", 1, 2),
    "name": Searchable("name", 2, 10),
    "given_name": Searchable("given_name", 2, 10),
    "family_name": Searchable("family_name", 2, 10),
    "preferred_username": Searchable("preferred_username", 2, 10),
    "cognito:user_status": Searchable(
        "status", 4, share=3, field="UserStatus", never_null=True, like=False
    ),
    "status": Searchable("enabled", 4, share=2, field="Enabled", never_null=True, like=False),
}


@dataclasses.dataclass(frozen=True)
class ImportedColumn:
    """A column IMPORT FOREIGN SCHEMA declares: its name, type and column options."""

    name: str
    type_name: str
    options: dict = dataclasses.field(default_factory=dict)


# Built-in columns read the user record.  With email and attributes they are the seven
# columns of Supabase's wrapper, kept so its SQL works as is.
BUILTIN_COLUMNS = {
    "username": Field("Username", STRING, "Username"),
    "status": Field("UserStatus", STRING, "UserStatus"),
    "enabled": Field("Enabled", BOOLEAN, "Enabled"),
    "created_at": Field("UserCreateDate", INSTANT, "UserCreateDate"),
    # Not the standard attribute of that name (seconds since 1970), as in Supabase's wrapper.
    "updated_at": Field("UserLastModifiedDate", INSTANT, "UserLastModifiedDate"),
    "mfa_options": Field("MFAOptions", JSON, "MFAOptions, as a JSON array"),
}
# The only column option, on tables of users: the attribute a column reads (sql/guard.sql
# checks it as resolve_columns does).
ATTRIBUTE = "attribute"
# The column holding every attribute as one JSON object ({"sub": ..., "custom:x": ...}).
ALL_ATTRIBUTES = "attributes"

# Cognito custom attribute data types -> kinds.
CUSTOM_KINDS = {"String": STRING, "Number": NUMBER, "Boolean": BOOLEAN, "DateTime": DATETIME}


class ValueRefused(ColumnError):
    """A value from Cognito that the column's type cannot hold, worded as PostgreSQL words
    the same refusal; the row's reader names the row (:func:`rows.user_row`)."""

    def __init__(self, column, problem, hint, detail=None, row: str | None = None):
        where = f"{column} of {row}" if row else column
        super().__init__(f"cognito_fdw: column {where}: {problem}", hint=hint, detail=detail)
        self.column = column
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Column:
    """A resolved column: where its value comes from and how it becomes text.

    ``max_length``: the n of a ``character varying(n)`` or ``character(n)`` column, whose value is
    checked here as PostgreSQL's input function checks it (Multicorn stores a varchar's text
    unchecked, and a char(n)'s error names no column; docs/multicorn.md M11: a varchar's length goes
    unchecked).
    """

    name: str
    field: str | None  # a field of the user record, or None for an attribute
    attribute: str | None  # the attribute read; None with no field: all of them
    kind: str
    render: Callable[[object], object]
    type_name: str = "text"
    max_length: int | None = None

    def value(self, user: Mapping, attrs: Mapping[str, str]):
        """The column's value for this record; :class:`ValueRefused` if its type cannot
        hold it."""
        if self.field is not None:
            raw = user.get(self.field)
        elif self.attribute is None:
            raw = dict(attrs)
        else:
            raw = attrs.get(self.attribute)
        if raw is None:
            return None
        try:
            value = self.render(without_nul(raw))
        except Unfit as refused:
            hint = TYPE_HINT.format(column=self.name)
            raise ValueRefused(self.name, str(refused), hint) from None
        if self.max_length is not None and isinstance(value, str):
            value = self._fit(value)
        return value

    def _fit(self, value: str) -> str:
        if len(value) <= self.max_length:
            return value
        if value[self.max_length :].strip(" ") == "":
            return value[: self.max_length]
        raise ValueRefused(
            self.name,
            f"value too long for type {self.type_name}",
            f"PostgreSQL refuses to store it in {self.type_name} alike (SQLSTATE 22001). "
            f"Declare {self.name} longer or as text: ALTER FOREIGN TABLE ... ALTER COLUMN "
            f"{self.name} TYPE text.",
            detail=f"The value is {len(value)} characters long.",
        )


def unreadable_columns(problems: list[str], hint: str) -> ColumnError:
    """One error naming every column that cannot be read, and why."""
    plural = "s" if len(problems) > 1 else ""
    return ColumnError(
        f"foreign table {THIS_TABLE} has column{plural} that cannot be read: "
        + "; ".join(problems),
        hint=hint,
    )


# Built-in columns that read the user record and are no attribute: the attribute option
# cannot name them (updated_at is also a standard attribute, and the option reads that).
_RECORD_ONLY = frozenset(BUILTIN_COLUMNS) - frozenset(STANDARD_ATTRIBUTES) | {ALL_ATTRIBUTES}


def describe_valid(custom: Mapping[str, str]) -> str:
    """The HINT's list: the column names, and the attributes the attribute option takes."""
    names = sorted(set(BUILTIN_COLUMNS) | set(STANDARD_ATTRIBUTES) | {ALL_ATTRIBUTES})
    text = "Valid column names: " + ", ".join(names)
    text += (
        ". The attribute option takes any of these but the built-in columns "
        f"{', '.join(sorted(_RECORD_ONLY))}, or custom:<name>"
    )
    if custom:
        text += "; custom attributes of this pool: " + ", ".join(
            sorted(name.split(":", 1)[1] for name in custom)
        )
    return text


def column(name, field, attribute, kind: str, family: str, type_name: str) -> Column:
    """A resolved column: its renderer for the family, the length a varchar(n) or char(n)
    type allows."""
    length = _LENGTH_TYPE.fullmatch(type_name.strip())
    return Column(name, field, attribute, kind, renderer(kind, family), type_name,
                  int(length.group(2)) if length else None)  # fmt: skip


def resolve_columns(
    fdw_columns: Mapping, load_custom: Callable[[], Mapping[str, str]]
) -> list[Column]:
    """Resolve every declared column, or raise one :class:`ColumnError` naming them all.

    ``fdw_columns`` is Multicorn's name -> ColumnDefinition mapping; ``load_custom`` returns
    the pool's custom attributes (``custom:x`` -> data type) and is only called when a
    column needs it, so the common case costs no DescribeUserPool request.
    """
    custom_cache: list[Mapping[str, str]] = []

    def custom() -> Mapping[str, str]:
        if not custom_cache:
            custom_cache.append(load_custom())
        return custom_cache[0]

    resolved, problems = [], []
    for name, definition in fdw_columns.items():
        family = type_family(definition)
        options = definition.options or {}
        unknown_options = sorted(set(options) - {ATTRIBUTE})
        if unknown_options:
            problems.append(
                f"{name}: unknown column option {', '.join(unknown_options)} (only '{ATTRIBUTE}')"
            )
            continue
        attribute = options.get(ATTRIBUTE)
        if attribute is not None and attribute in _RECORD_ONLY:
            problems.append(
                f"{name}: {attribute!r} is a built-in column, not an attribute: name the column "
                f"{attribute} to read it (without the attribute option)"
            )
            continue
        if attribute is None and name in BUILTIN_COLUMNS:
            field, kind = BUILTIN_COLUMNS[name].field, BUILTIN_COLUMNS[name].kind
        elif attribute is None and name == ALL_ATTRIBUTES:
            field, kind = None, JSON
        else:
            field = None
            attribute, kind = _attribute_kind(attribute or name, attribute is not None, custom)
            if kind is None:
                problems.append(
                    f"{name}: no built-in column, standard attribute or custom attribute "
                    f"{attribute!r} in this pool"
                )
                continue
        # uuid holds sub (or an app's own id in a custom attribute), never an email or name.
        uuid_ok = attribute == "sub" or (attribute or "").startswith(("custom:", "dev:custom:"))
        problem = type_problem(name, definition.type_name, kind, family, uuid_ok)
        if problem:
            problems.append(problem)
            continue
        resolved.append(column(name, field, attribute, kind, family, definition.type_name))

    if problems:
        raise unreadable_columns(
            problems,
            describe_valid(custom() if custom_cache else {})
            + ". Map any attribute with a column option, e.g. "
            "tenant text OPTIONS (attribute 'custom:tenant').",
        )
    return resolved


def resolve_fields(fdw_columns: Mapping, fields: Mapping[str, Field], what: str) -> list[Column]:
    """The columns of an object whose columns are ``fields`` (name -> :class:`Field`), or
    one :class:`ColumnError` naming every column ``what`` (the object) does not have or
    whose type cannot hold its value."""
    resolved, problems = [], []
    for name, definition in fdw_columns.items():
        spec = fields.get(name)
        if spec is None:
            problems.append(f"{name}: not a column of {what}")
            continue
        family = type_family(definition)
        problem = type_problem(name, definition.type_name, spec.kind, family, uuid_ok=False)
        if problem:
            problems.append(problem)
            continue
        resolved.append(column(name, spec.field, None, spec.kind, family, definition.type_name))
    if problems:
        raise unreadable_columns(problems, f"Columns of object '{what}': {', '.join(fields)}.")
    return resolved


def _attribute_kind(attribute: str, explicit: bool, custom: Callable[[], Mapping[str, str]]):
    if attribute in STANDARD_ATTRIBUTES:
        return attribute, STANDARD_ATTRIBUTES[attribute]
    if attribute.startswith(("custom:", "dev:custom:")):
        data_type = custom().get(attribute)
        return attribute, CUSTOM_KINDS.get(data_type, STRING) if data_type else None
    if not explicit and ":" not in attribute:
        data_type = custom().get("custom:" + attribute)
        if data_type:
            return "custom:" + attribute, CUSTOM_KINDS.get(data_type, STRING)
    return attribute, None
