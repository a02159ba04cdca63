"""What the wrapper may safely ask of the PostgreSQL backend it runs in, through ctypes.

Two measured hazards shape this (facts sheet section 0): ``check_interrupts()`` longjmps
through Python and crashes the cluster later (H2), and a NOTICE/WARNING/DEBUG report made
while a cancel is pending breaks every later Python call in the backend (H3).  So cancels
are polled by reading PostgreSQL's flags, and non-error reports hold interrupts.
Outside a backend (unit tests, the CLI) the flags are absent and both are no-ops.
"""

from __future__ import annotations

import ctypes


def _symbol(name: str, ctype):
    try:
        return ctype.in_dll(ctypes.CDLL(None), name)
    except (ValueError, OSError):
        return None


_interrupt_pending = _symbol("InterruptPending", ctypes.c_int)
_cancel_pending = _symbol("QueryCancelPending", ctypes.c_int)
_die_pending = _symbol("ProcDiePending", ctypes.c_int)
_holdoff = _symbol("InterruptHoldoffCount", ctypes.c_uint32)


def _function(name: str, restype):
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    function.restype = restype
    function.argtypes = []
    return function


_statement_start = _function("GetCurrentStatementStartTimestamp", ctypes.c_int64)


def cancel_pending() -> bool:
    """True when the statement is being cancelled (cancel, timeout) or the backend is dying."""
    if _interrupt_pending is None or _cancel_pending is None or _die_pending is None:
        return False
    return bool(_interrupt_pending.value and (_cancel_pending.value or _die_pending.value))


def statement_started() -> int | None:
    """When the running statement started (microseconds), identifying it; None outside."""
    return None if _statement_start is None else _statement_start()


def report(log, message: str, level) -> None:
    """``log_to_postgres`` at a non-error level, with interrupts held (hazard H3)."""
    if _holdoff is None:
        log(message, level)
        return
    _holdoff.value += 1
    try:
        log(message, level)
    finally:
        _holdoff.value -= 1
