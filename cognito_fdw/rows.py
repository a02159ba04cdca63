"""Cognito user records into the row dicts Multicorn turns into PostgreSQL rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .columns import Column


def user_attributes(user: Mapping) -> dict[str, str]:
    """The user's attributes as a dict (ListUsers says Attributes, AdminGetUser UserAttributes)."""
    pairs = user.get("Attributes")
    if pairs is None:
        pairs = user.get("UserAttributes") or ()
    return {pair["Name"]: pair.get("Value") for pair in pairs}


def user_row(user: Mapping, columns: Iterable[Column]) -> dict[str, object]:
    """One row with every column: Multicorn converts all of them, selected or not."""
    attrs = user_attributes(user)
    return {column.name: column.value(user, attrs) for column in columns}
