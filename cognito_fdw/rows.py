"""Cognito user records into the row dicts Multicorn turns into PostgreSQL rows.

Multicorn converts every key of a row dict, selected or not (docs/multicorn.md M1: every key of a
row is converted), and encodes each string with the database encoding's Python codec: a character
that encoding cannot hold would fail the whole query with ``Error in python: UnicodeEncodeError``.
So a row holds only the columns the query reads, and each string is checked first, to fail with an
error naming the column, the user and the character.
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from .columns import Column, ValueRefused
from .errors import CognitoFdwError


class EncodingError(CognitoFdwError):
    """A value from Cognito that the database encoding cannot hold."""


def user_attributes(user: Mapping) -> dict[str, str]:
    """The user's attributes as a dict (ListUsers says Attributes, AdminGetUser UserAttributes)."""
    pairs = user.get("Attributes")
    if pairs is None:
        pairs = user.get("UserAttributes") or ()
    return {pair["Name"]: pair.get("Value") for pair in pairs}


def read_columns(resolved: Sequence[Column], wanted: Iterable[str]) -> list[Column]:
    """The columns a scan converts: those of ``wanted`` (execute's ``columns``), or every one when
    it is empty, as Multicorn passes both ``count(*)`` and a whole-row reference (``SELECT u FROM
    users u``) as an empty set (docs/multicorn.md M1: every key of a row is converted)."""
    wanted = set(wanted)
    return [column for column in resolved if column.name in wanted] if wanted else list(resolved)


@dataclasses.dataclass(frozen=True)
class DatabaseEncoding:
    """The database encoding as PostgreSQL names it, and the Python codec Multicorn encodes
    strings with for it."""

    name: str
    codec: str


def database_encoding(name: str | None) -> DatabaseEncoding | None:
    """The encoding of a database whose encoding PostgreSQL names ``name`` (``UTF8``,
    ``LATIN1``, ``SQL_ASCII``); None outside a backend.

    Multicorn hands PostgreSQL's name to Python as is, except ``SQL_ASCII``, which it
    encodes as ``ascii``.  Raises :class:`EncodingError` for an encoding Python has no
    codec of that name for (``WIN1252``, ``KOI8R``, ...): Multicorn cannot return text there.
    """
    if name is None:
        return None
    if name == "SQL_ASCII":
        return DatabaseEncoding(name, "ascii")
    try:
        return DatabaseEncoding(name, codecs.lookup(name).name)
    except LookupError:
        raise EncodingError(
            f"cognito_fdw cannot return text in a database with encoding {name}: "
            "Multicorn2 encodes strings with Python's codec of that name, and Python has none",
            hint="Use the wrapper from a database with encoding UTF8.",
        ) from None


def record_row(record: Mapping, columns: Iterable[Column]) -> dict:
    """One row of an object whose columns each read a field of one API record (a group,
    the user pool)."""
    return {column.name: column.value(record, {}) for column in columns}


def user_row(
    user: Mapping, columns: Iterable[Column], encoding: DatabaseEncoding | None = None
) -> dict:
    """One row holding ``columns`` (see :func:`read_columns`).

    With an ``encoding``, a string it cannot hold raises :class:`EncodingError` naming the
    column, the user and the character, as PostgreSQL's own 22P05 does; a value the
    column's type cannot hold (:class:`ValueRefused`) is named with its user too.
    """
    attrs = user_attributes(user)
    row = {}
    for column in columns:
        try:
            value = column.value(user, attrs)
        except ValueRefused as refused:
            row_name = f"user {user.get('Username')!r}"
            raise ValueRefused(
                refused.column, refused.problem, refused.hint, refused.detail, row_name
            ) from None
        if encoding is not None and isinstance(value, str) and not value.isascii():
            _check_encodable(value, encoding, column.name, user)
        row[column.name] = value
    return row


def _check_encodable(value: str, encoding: DatabaseEncoding, column: str, user: Mapping) -> None:
    try:
        value.encode(encoding.codec)
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        sequence = " ".join(f"0x{b:02x}" for b in bad.encode("utf-8", "surrogatepass"))
        raise EncodingError(
            f"cognito_fdw: column {column} of user {user.get('Username')!r}: character "
            f'with byte sequence {sequence} in encoding "UTF8" has no equivalent in encoding '
            f'"{encoding.name}"',
            hint=f"The database encoding {encoding.name} cannot hold this value from Cognito. "
            f"Leave {column} out of the query (count(*) and a whole-row reference read every "
            "column; count(username) does not), or read it from a database with encoding UTF8.",
            detail=f"The character is U+{ord(bad):04X}, at position {exc.start + 1} of the value.",
        ) from None
