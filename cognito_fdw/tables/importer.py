"""IMPORT FOREIGN SCHEMA as pure data: one table per object, its columns from the registry.

``IMPORT FOREIGN SCHEMA cognito FROM SERVER s INTO cognito [OPTIONS (writable 'true')]``
creates one table of each object (:data:`cognito_fdw.objects.OBJECTS`), named after it, with
the columns its class declares (:meth:`cognito_fdw.tables.table.Table.imported_columns`): for
``users`` every standard attribute and the pool's custom attributes as typed columns.  The
remote schema name is not used: a server is one pool.  PostgreSQL applies LIMIT TO /
EXCEPT to the returned tables itself (docs/multicorn.md M6: IMPORT writes option keys unquoted).

Multicorn writes option keys into the DDL unquoted (docs/multicorn.md M6: IMPORT writes option keys
unquoted), so every key here is lower-case snake_case; values are quoted by Multicorn.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from ..columns import ImportedColumn
from ..errors import OptionError
from .table import OBJECTS, table_class

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
class ImportedTable:
    name: str
    columns: list[ImportedColumn]
    options: dict


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


def table_definitions(custom: Mapping[str, str], options: Mapping[str, str]) -> list:
    """One table per object (:data:`cognito_fdw.objects.OBJECTS`), its columns from its
    registry, for a pool with these custom attributes; ``options`` are IMPORT's own."""
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
    tables = []
    for name in OBJECTS:
        cls = table_class(name)
        if not cls.imported:
            continue
        table_options = {"object": name}
        if cls.importable_writable:
            table_options["writable"] = writable
        tables.append(ImportedTable(name, cls.imported_columns(custom), table_options))
    return tables
