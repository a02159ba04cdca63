"""What the wrapper may safely ask of the PostgreSQL backend it runs in, through ctypes.

Two measured hazards shape this (facts sheet section 0): ``check_interrupts()`` longjmps
through Python and crashes the cluster later (H2), and a NOTICE/WARNING/DEBUG report made
while a cancel is pending breaks every later Python call in the backend (H3).  So cancels
are polled by reading PostgreSQL's flags, and non-error reports hold interrupts.
Outside a backend (unit tests, the CLI) the flags are absent and both are no-ops.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import TypeVar

from .errors import CognitoFdwError

T = TypeVar("T")


def variable(name: str, ctype):
    """A global variable of the backend, or None outside one."""
    try:
        return ctype.in_dll(ctypes.CDLL(None), name)
    except (ValueError, OSError):
        return None


def function(name: str, restype, argtypes):
    """A C function of the backend, or None outside one.  Call it from the main thread only,
    and only functions that cannot raise an ERROR (it would longjmp through Python)."""
    try:
        found = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    found.restype = restype
    found.argtypes = argtypes
    return found


_interrupt_pending = variable("InterruptPending", ctypes.c_int)
_cancel_pending = variable("QueryCancelPending", ctypes.c_int)
_die_pending = variable("ProcDiePending", ctypes.c_int)
_holdoff = variable("InterruptHoldoffCount", ctypes.c_uint32)


_statement_start = function("GetCurrentStatementStartTimestamp", ctypes.c_int64, [])


def cancel_pending() -> bool:
    """True when the statement is being cancelled (cancel, timeout) or the backend is dying."""
    if _interrupt_pending is None or _cancel_pending is None or _die_pending is None:
        return False
    return bool(_interrupt_pending.value and (_cancel_pending.value or _die_pending.value))


class Cancelled(CognitoFdwError):
    """The statement was cancelled while the wrapper waited for Cognito."""


def run_cancellable(call: Callable[[], T], poll_seconds: float = 0.05) -> T:
    """Run a blocking request in a helper thread; poll for a cancel in the backend's thread.

    A stalled endpoint would otherwise hold a cancel or statement_timeout for a whole read
    timeout per retry.  On a cancel the request is abandoned (its thread ends with its own
    timeout, touching nothing of PostgreSQL) and :class:`Cancelled` unwinds the scan.
    """
    if _interrupt_pending is None or threading.current_thread() is not threading.main_thread():
        # Outside a backend nothing cancels; in a scan worker, the backend's thread is the
        # one polling (while it waits for the workers' pages).
        return call()
    outcome: dict[str, object] = {}
    done = threading.Event()

    def target():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed over to the backend's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="cognito-fdw-request", daemon=True).start()
    while not done.wait(poll_seconds):
        if cancel_pending():
            raise Cancelled(
                "canceling statement: cognito_fdw stopped waiting for Cognito",
                hint="The statement was cancelled (pg_cancel_backend, statement_timeout or "
                "shutdown) while a request was in flight; the session stays usable.",
            )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


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
