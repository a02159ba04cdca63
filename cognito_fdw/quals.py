"""Multicorn's quals, read the same way by every table: a qual's text as EXPLAIN shows it,
the values an equality allows, the first qual no row can satisfy, and whether a name column
may be pushed (pure).

A qual is Multicorn's ``Qual`` (``field_name``, ``operator``, ``value``): ``operator`` is a
string, or ``(operator, use_or)`` for ``op ANY`` / ``op ALL`` of an array.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from . import plans
from .api import is_cognito_name
from .nulls import cannot_match
from .values import EXACT_TEXT_TYPES, type_family


def qual_text(qual) -> str:
    """The qual as EXPLAIN shows it: ``email = 'a@example.com'``."""
    return condition_text(qual.field_name, qual.operator, qual.value)


def condition_text(column: str, operator, value) -> str:
    """``column operator value`` as EXPLAIN shows it (``operator`` as in a qual)."""
    if isinstance(operator, (tuple, list)):
        operator = f"{operator[0]} {'ANY' if operator[1] else 'ALL'}"
    op = {"~~": "LIKE", "~~*": "ILIKE", "!~~": "NOT LIKE", "!~~*": "NOT ILIKE"}.get(
        operator, operator
    )
    return f"{column} {op} {_literal(value)}"


def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_literal(v) for v in value) + ")"
    return "'" + str(value).replace("'", "''") + "'"


def impossible(quals, never_null: Collection[str]) -> str | None:
    """The text of the first qual no row can satisfy, or None.  ``never_null`` holds the
    columns that are NULL in no row."""
    for qual in quals:
        if cannot_match(qual, qual.field_name in never_null):
            return qual_text(qual)
    return None


def equal_values(quals, name: str, names: bool = True) -> tuple[list, str] | None:
    """The values a qual ``name = v`` or ``name IN (...)`` allows and the qual's text, or
    None if there is no such qual.

    With ``names`` (the column holds Cognito names), values that cannot be one match
    nothing, so they are dropped here rather than sent (Cognito would refuse them).
    """
    for qual in quals:
        if qual.field_name != name:
            continue
        if qual.operator == "=" and isinstance(qual.value, str):
            values = [qual.value]
        elif qual.operator == ("=", True) and isinstance(qual.value, (list, tuple)):
            values = [v for v in qual.value if v is not None]
        else:
            continue
        if not all(isinstance(v, str) for v in values):
            # A text column's values arrive as str: anything else was converted with a
            # wrong type (docs/multicorn.md H12: the type read from the wrong place), and
            # dropping it would lose its rows.
            continue
        if names:
            values = [v for v in values if is_cognito_name(v)]
        return values, qual_text(qual)
    return None


def exact_text(fdw_columns: Mapping, name: str) -> bool:
    """Whether column ``name`` is declared and compares as Cognito does: text or varchar."""
    definition = fdw_columns.get(name)
    return definition is not None and type_family(definition) in EXACT_TEXT_TYPES


def pushable(fdw_columns: Mapping, name: str, collations: Callable[[], Sequence[str]]) -> bool:
    """Whether quals on the name column ``name`` may be sent to Cognito.  ``collations``
    gives the nondeterministic collations a comparison on the table may use (called only
    for a text column)."""
    # Cognito compares names exactly; a citext column compares without case, and neither
    # may a nondeterministic collation apply (plans.REFUSALS["collation"]): pushing its
    # value would lose rows that PostgreSQL's re-check would have kept.
    return exact_text(fdw_columns, name) and not collations()


def once(function: Callable[[], Sequence[str]]) -> Callable[[], Sequence[str]]:
    """``function``, called at most once: the collations one plan is made under."""
    answers: list[Sequence[str]] = []

    def answer() -> Sequence[str]:
        if not answers:
            answers.append(function())
        return answers[0]

    return answer


def words(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def refusals(
    quals,
    pushed: str | None,
    keys: Sequence[str],
    fdw_columns: Mapping,
    collations: Callable[[], Sequence[str]],
    what: str,
) -> tuple[plans.Refusal, ...]:
    """Why each of a scan's conditions on a table of names but ``pushed`` (the text of the
    one sent to Cognito, or None) is left to PostgreSQL.  ``keys`` are the columns Cognito
    finds ``what`` (the rows) by, most selective first; ``collations`` as for
    :func:`pushable`."""
    found = []
    for qual in quals:
        text = qual_text(qual)
        if text == pushed:
            pushed = None  # the one sent; an identical second one is left
            continue
        if qual.field_name not in keys:
            found.append(plans.Refusal(text, "not-a-key", f"{what} by {words(keys)}"))
            continue
        if not pushable(fdw_columns, qual.field_name, collations):
            reason = "collation" if exact_text(fdw_columns, qual.field_name) else "name-type"
        elif equal_values([qual], qual.field_name, names=False) is None:
            reason = "name-operator"
        else:
            reason = "name-not-chosen"
        found.append(plans.Refusal(text, reason))
    return tuple(found)
