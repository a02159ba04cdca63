"""IMPORT FOREIGN SCHEMA as pure data: the three tables and their columns.

``IMPORT FOREIGN SCHEMA cognito FROM SERVER s INTO cognito [OPTIONS (writable 'true')]``
creates ``users`` (every standard attribute, and the pool's custom attributes as typed
columns), ``groups`` and ``group_members``.  The remote schema name is not used: a server
is one pool.  PostgreSQL applies LIMIT TO / EXCEPT to the returned tables itself.

Multicorn writes option keys into the DDL unquoted (docs/multicorn.md M6), so every key
here is lower-case snake_case; values are quoted by Multicorn.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from .columns import ALL_ATTRIBUTES, BOOLEAN, JSON_TEXT, STANDARD_ATTRIBUTES
from .errors import OptionError
from .groups import GROUP_COLUMNS

# Cognito custom attribute data type -> PostgreSQL type.
CUSTOM_TYPES = {
    "String": "text",
    "Number": "numeric",
    "Boolean": "boolean",
    "DateTime": "timestamp with time zone",
}
IMPORT_OPTIONS = ("writable",)

# Reserved words that a column would have to quote (a subset: those an attribute might be).
_RESERVED = {
    "all", "and", "any", "array", "as", "asc", "both", "case", "cast", "check", "collate",
    "column", "constraint", "create", "default", "desc", "distinct", "do", "else", "end",
    "except", "false", "for", "foreign", "from", "grant", "group", "having", "in", "into",
    "is", "join", "limit", "not", "null", "offset", "on", "only", "or", "order", "primary",
    "references", "select", "table", "then", "to", "true", "union", "unique", "user",
    "using", "when", "where", "with",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ImportedColumn:
    name: str
    type_name: str
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ImportedTable:
    name: str
    columns: list
    options: dict


# users' built-in columns, typed for timestamptz so instants survive any TimeZone.
_USER_BUILTINS = [
    ImportedColumn("username", "text"),
    ImportedColumn("status", "text"),
    ImportedColumn("enabled", "boolean"),
    ImportedColumn("created_at", "timestamp with time zone"),
    ImportedColumn("updated_at", "timestamp with time zone"),
    ImportedColumn("mfa_options", "jsonb"),
    ImportedColumn(ALL_ATTRIBUTES, "jsonb"),
]
_GROUP_TYPES = {
    "group_name": "text",
    "description": "text",
    "precedence": "integer",
    "role_arn": "text",
    "created_at": "timestamp with time zone",
    "updated_at": "timestamp with time zone",
}
_MEMBER_COLUMNS = [
    ImportedColumn("group_name", "text"),
    ImportedColumn("username", "text"),
    ImportedColumn("membership", "text"),
    ImportedColumn("sub", "text"),  # text, as in users: see _standard_type
    ImportedColumn("email", "text"),
    ImportedColumn("enabled", "boolean"),
    ImportedColumn("status", "text"),
]


def column_name(attribute: str, taken: set[str]) -> str:
    """A name needing no quoting for ``custom:Name`` (``name``), unique among ``taken``."""
    base = attribute.split(":")[-1]
    base = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", base).lower()
    base = re.sub(r"[^a-z0-9_]+", "_", base).strip("_") or "attribute"
    if base[0].isdigit() or base in _RESERVED or base in taken:
        base = "custom_" + base
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def _standard_type(name: str, kind: str) -> str | None:
    # sub is text, not uuid: only a text column can be a join's path key.  Multicorn
    # converts a uuid join parameter's empty value in C under EXPLAIN, which crashes the
    # backend (docs/multicorn.md H1); README "Joining on sub" shows the joins.
    if kind == BOOLEAN:
        return "boolean"
    if kind == JSON_TEXT:
        return "jsonb"
    if name == "updated_at":
        return None  # the column of that name is UserLastModifiedDate (see README)
    return "text"


def users_table(custom: Mapping[str, str]) -> ImportedTable:
    columns = list(_USER_BUILTINS)
    for name, kind in STANDARD_ATTRIBUTES.items():
        type_name = _standard_type(name, kind)
        if type_name:
            columns.append(ImportedColumn(name, type_name))
    taken = {c.name for c in columns}
    for attribute, data_type in sorted(custom.items()):
        name = column_name(attribute, taken)
        taken.add(name)
        columns.append(
            ImportedColumn(name, CUSTOM_TYPES.get(data_type, "text"), {"attribute": attribute})
        )
    return ImportedTable("users", columns, {"object": "users"})


def table_definitions(custom: Mapping[str, str], options: Mapping[str, str]) -> list:
    """users, groups and group_members for a pool with these custom attributes."""
    unknown = sorted(set(options) - set(IMPORT_OPTIONS))
    if unknown:
        raise OptionError(
            f"unknown IMPORT FOREIGN SCHEMA option: {', '.join(unknown)}",
            hint="The only option is writable 'true' (group_members accepts INSERT/DELETE).",
        )
    writable = options.get("writable", "false").strip().lower()
    if writable not in ("true", "false"):
        raise OptionError(
            f"invalid value for option writable: {options['writable']!r}",
            hint="Set writable to 'true' or 'false'.",
        )
    groups = ImportedTable(
        "groups",
        [ImportedColumn(name, _GROUP_TYPES[name]) for name in GROUP_COLUMNS],
        {"object": "groups"},
    )
    members = ImportedTable(
        "group_members",
        list(_MEMBER_COLUMNS),
        {"object": "group_members", "writable": writable},
    )
    return [users_table(custom), groups, members]
