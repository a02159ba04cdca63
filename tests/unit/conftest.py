"""Unit tests run without a server: when the real ``multicorn`` package is not importable,
a double stands in for it.  Like the real one, its ``log_to_postgres`` raises
``MulticornException`` at ERROR and CRITICAL (tests that pass against a double that merely
recorded errors would contradict production)."""

from __future__ import annotations

import importlib.util
import logging
import sys
import types


def _install_double() -> None:
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


if importlib.util.find_spec("multicorn") is None:
    _install_double()
