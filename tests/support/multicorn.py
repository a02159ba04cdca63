"""Multicorn as the unit tests see it, without PostgreSQL.

:func:`install_double` puts a ``multicorn`` package in ``sys.modules`` where the real one is
not importable (it exists only inside a backend).  Like the real one, its
``log_to_postgres`` raises ``MulticornException`` at ERROR and CRITICAL: tests that pass
against a double that merely recorded errors would contradict production.

:class:`ColumnDefinition` and :class:`Qual` are shaped like what Multicorn hands a wrapper
(the attributes the wrapper reads, no more).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from typing import Any, NamedTuple


class ColumnDefinition(NamedTuple):
    """A column of the foreign table, as Multicorn's ``ColumnDefinition`` describes it."""

    column_name: str
    type_name: str  # as declared, e.g. "character varying(200)"
    base_type_name: str  # without the type modifier, e.g. "character varying"
    options: dict


class Qual(NamedTuple):
    """A condition Multicorn offers the wrapper: ``operator`` is a string, or ``(op, True)``
    for ``= ANY(array)`` (``value`` then a list)."""

    field_name: str
    operator: Any
    value: Any


def column(name: str, type_name: str, options: dict | None = None) -> ColumnDefinition:
    """The definition of column ``name`` declared as ``type_name``, with column ``options``."""
    return ColumnDefinition(name, type_name, type_name.split("(")[0], options or {})


def column_definitions(**types) -> dict[str, ColumnDefinition]:
    """A table's columns in order: each keyword is a column, its value the type name or a
    ``(type name, options)`` pair."""
    found = {}
    for name, spec in types.items():
        type_name, options = spec if isinstance(spec, tuple) else (spec, None)
        found[name] = column(name, type_name, options)
    return found


def install_double() -> None:
    """Make ``import multicorn`` and ``import multicorn.utils`` give the double."""
    utils = types.ModuleType("multicorn.utils")
    utils.DEBUG, utils.INFO, utils.WARNING = logging.DEBUG, logging.INFO, logging.WARNING
    utils.ERROR, utils.CRITICAL = logging.ERROR, logging.CRITICAL
    utils.messages = []

    class MulticornException(Exception):
        def __init__(self, message, code, hint, detail):
            super().__init__(message)
            self.message, self.code, self.hint, self.detail = message, code, hint, detail

    def log_to_postgres(message, level=logging.INFO, hint=None, detail=None):
        if level in (logging.ERROR, logging.CRITICAL):
            raise MulticornException(message, level, hint, detail)
        utils.messages.append((level, message, hint, detail))

    utils.MulticornException = MulticornException
    utils.log_to_postgres = log_to_postgres

    package = types.ModuleType("multicorn")

    class ForeignDataWrapper:
        # The real base class's defaults: a startup cost, and hooks that do nothing.
        _startup_cost = 20

        def __init__(self, fdw_options, fdw_columns):
            pass

        def begin(self, serializable):
            pass

        def sub_begin(self, level):
            pass

        def sub_commit(self, level):
            pass

        def sub_rollback(self, level):
            pass

        def pre_commit(self):
            pass

        def commit(self):
            pass

        def rollback(self):
            pass

        def end_scan(self):
            pass

    package.ForeignDataWrapper = ForeignDataWrapper
    package.utils = utils
    sys.modules["multicorn"] = package
    sys.modules["multicorn.utils"] = utils


def install_double_if_missing() -> None:
    """The double, unless the real ``multicorn`` package is importable."""
    if importlib.util.find_spec("multicorn") is None:
        install_double()
