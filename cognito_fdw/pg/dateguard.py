"""Multicorn's conversion of date and timestamp constants, made safe (docs/multicorn.md H11: an
unholdable date constant crashes).

Multicorn turns a ``date`` or ``timestamp`` constant of a condition into a Python object
through CPython's datetime C API, which refuses years outside 1..9999; PostgreSQL's
``infinity`` and ``-infinity`` come out of its conversion with such years.  For an element of
an array Multicorn does not check the NULL it gets back, and the backend crashes (SIGSEGV,
every session restarts); a single value fails the query.  :func:`guard_date_conversions`
wraps the API's two constructors so that such a value becomes a :class:`DateOutOfRange`.
"""

from __future__ import annotations

import ctypes

from . import backend


# The head of CPython's PyDateTime_CAPI (Include/datetime.h, the same since 3.7): five type
# pointers, the UTC singleton, then the constructors C code calls.
class _DateTimeCAPI(ctypes.Structure):
    _fields_ = [
        ("DateType", ctypes.c_void_p),
        ("DateTimeType", ctypes.c_void_p),
        ("TimeType", ctypes.c_void_p),
        ("DeltaType", ctypes.c_void_p),
        ("TZInfoType", ctypes.c_void_p),
        ("TimeZone_UTC", ctypes.c_void_p),
        ("Date_FromDate", ctypes.c_void_p),
        ("DateTime_FromDateAndTime", ctypes.c_void_p),
    ]


_DATE_FROM_DATE = ctypes.PYFUNCTYPE(
    ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p
)
_DATETIME_FROM = ctypes.PYFUNCTYPE(
    ctypes.c_void_p, *[ctypes.c_int] * 7, ctypes.c_void_p, ctypes.c_void_p
)
_date_guards: list = []  # the installed callbacks, kept alive for the process's life


class DateOutOfRange:
    """What Multicorn passes for a date or timestamp constant Python cannot hold (PostgreSQL's
    ``infinity`` and ``-infinity``, a year outside 1..9999): the value is not known, only that
    it is one of those.  Code that formats or compares it as a date fails cleanly."""

    def __str__(self) -> str:
        return "±infinity or a year outside 1..9999"

    __repr__ = __str__


def guard_date_conversions() -> bool:
    """In a backend, make the datetime C API's two constructors answer a value Python cannot
    hold with the :class:`DateOutOfRange` marker instead of NULL; every other call goes to
    CPython unchanged.  Once per process; True when installed, False (nothing changed)
    outside a backend or when the API's table is not the expected one.

    The wrapper pushes no date condition and PostgreSQL re-checks every condition with the
    real value, so the marker only shows in EXPLAIN's wrapper lines.
    """
    if _date_guards:
        return True
    if not backend.in_backend():
        return False  # not in PostgreSQL: other code of this process keeps CPython's own
    import datetime

    get = ctypes.pythonapi.PyCapsule_Import
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    address = get(b"datetime.datetime_CAPI", 0)
    if not address:
        return False
    api = _DateTimeCAPI.from_address(address)
    if api.DateType != id(datetime.date) or api.DateTimeType != id(datetime.datetime):
        return False
    date_from = _DATE_FROM_DATE(api.Date_FromDate)
    datetime_from = _DATETIME_FROM(api.DateTime_FromDateAndTime)
    marker = DateOutOfRange()

    def out_of_range() -> int:
        # A constructor returns a new reference: the caller releases it.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(marker))
        return id(marker)

    def date_guard(year, month, day, kind):
        try:
            return date_from(year, month, day, kind)
        except ValueError:
            return out_of_range()

    def datetime_guard(year, month, day, hour, minute, second, usecond, tzinfo, kind):
        try:
            return datetime_from(year, month, day, hour, minute, second, usecond, tzinfo, kind)
        except ValueError:
            return out_of_range()

    guards = (_DATE_FROM_DATE(date_guard), _DATETIME_FROM(datetime_guard))
    _date_guards.extend((date_from, datetime_from, marker, *guards))
    api.Date_FromDate = ctypes.cast(guards[0], ctypes.c_void_p).value
    api.DateTime_FromDateAndTime = ctypes.cast(guards[1], ctypes.c_void_p).value
    return True
