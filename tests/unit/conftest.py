"""Unit tests run without a server: where the real ``multicorn`` package is not importable,
the double of tests/support/multicorn.py stands in for it (it raises on ERROR, as the real
one does)."""

from __future__ import annotations

from ..support.multicorn import install_double_if_missing


def pytest_configure(config):
    # Before any test module is imported: cognito_fdw.fdw imports multicorn at its top.
    install_double_if_missing()
