"""NULL in a qual: which quals no row can satisfy, and what records the planned IS NULL
tests that tell ``col IS NULL`` from a NULL join key or parameter (pure: the backend's record
is the users table's, :data:`cognito_fdw.tables.users.PLANNED_NULL_TESTS`).

A qual no row can satisfy (a comparison with NULL, ``= ANY`` of an empty array, ``NOT IN``
a list holding NULL; see :func:`cannot_match`) makes a NONE plan: no request, no row.
``col = NULL`` from a join key or a parameter arrives exactly as ``col IS NULL`` does; only
planning tells them apart (:class:`NullTests`).
"""

from __future__ import annotations

from collections.abc import Iterable

# Operators that yield NULL for a NULL operand (all the built-in ones Multicorn passes for
# the column types the tables accept).  A user-defined operator may not be strict.
_STRICT = frozenset(
    {"=", "<>", "<", ">", "<=", ">=", "~~", "~~*", "!~~", "!~~*", "~", "~*", "!~", "!~*"}
)


def cannot_match(qual, never_null: bool, may_be_null_test: bool = True) -> bool:
    """True when no row can satisfy the qual: a plan for it needs no request.

    ``never_null`` says the qual's column is NULL in no row.  Multicorn passes
    ``col IS NULL`` as ``('=', None)``, exactly as it passes ``col = $1`` executed with a
    NULL parameter or a join whose outer key is NULL (a literal ``col = NULL`` never
    arrives: PostgreSQL folds it to false).  So ``('=', None)`` may be IS NULL; it matches
    nothing either way on a never-NULL column, and on any column when ``may_be_null_test``
    is False (:meth:`NullTests.may_be_null_test` proves it is no IS NULL).  ``('<>', None)``
    (IS NOT NULL) and ``('IS NOT', None)`` (IS NOT UNKNOWN) may be true.  Any other strict
    operator with None only comes from a NULL parameter: never true.  Arrays: ``op ANY``
    or ``ALL`` of a NULL array is NULL; ANY of an empty array is false, ANY of only NULLs
    NULL; ALL (``NOT IN``) of a list holding a NULL is false or NULL, never true.
    """
    operator, value = qual.operator, qual.value
    if isinstance(operator, (tuple, list)):
        name, use_or = operator
        if value is None:
            return True
        if not isinstance(value, (list, tuple)):
            # Not the list an array converts to: Multicorn converted a non-constant
            # expression with a wrong type (docs/multicorn.md H12: the type read from the wrong
            # place); nothing is proven.
            return False
        if use_or and not value:
            return True
        if name not in _STRICT:
            return False
        return all(v is None for v in value) if use_or else any(v is None for v in value)
    if value is not None:
        return False
    if operator == "=":
        return never_null or not may_be_null_test
    if operator == "IS":
        return never_null
    return operator in _STRICT and operator != "<>"


class NullTests:
    """The columns this backend has planned ``col IS NULL`` on, to tell it from a NULL key.

    At execution Multicorn passes ``col IS NULL``, ``col = $1`` run with a NULL and a join whose
    outer key is NULL all as ``('=', None)`` (docs/multicorn.md M10: IS NULL and a NULL key arrive
    alike).  At planning ``get_rel_size`` receives the constant quals only: an IS NULL arrives there
    as ``('=', None)`` too, a parameter or a join key never does.  Every plan this backend runs was
    planned in this backend (plans are not shared between backends, and a foreign scan never runs in
    a parallel worker), and planning a scan calls ``get_rel_size``, which calls :meth:`note`.  So a
    column noted nowhere has no IS NULL in any plan: its ``('=', None)`` is a NULL key or parameter
    and matches nothing.  A noted column stays noted for the backend's life (a cached plan may hold
    the IS NULL for as long), keyed by column name alone so that a wrapper instance made again (new
    options, SET ROLE) still knows.
    """

    def __init__(self):
        self._columns: set[str] = set()

    def note(self, planned_quals: Iterable) -> None:
        """Record the IS NULL tests among the quals ``get_rel_size`` received."""
        for qual in planned_quals:
            if qual.operator == "=" and qual.value is None:
                self._columns.add(qual.field_name)

    def may_be_null_test(self, column: str) -> bool:
        return column in self._columns
