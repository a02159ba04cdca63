"""Everything the wrapper asks of the PostgreSQL backend it runs in, through ctypes.

**Only the backend's own thread calls into PostgreSQL** (docs/multicorn.md H8: no PostgreSQL call
off the backend thread).  The backend is single-threaded: a C function called from another thread
(ctypes releases the GIL around the call) races the backend on its catalog caches and memory
contexts, and crashed the cluster.  So every call into PostgreSQL lives here (the catalog reads in
:mod:`cognito_fdw.pg.catalog`, built on this module's helpers), and each one refuses to run on any
other thread with :class:`OffBackendThread` (a bug guard: the wrapper resolves what its threads need
before it starts them, see :mod:`cognito_fdw.aws.scan`).  The one thing any thread may do is
:func:`cancel_pending`, which only reads plain variables.

Two more measured hazards shape this (docs/multicorn.md H2: check_interrupts longjmps through
Python; H3: no report while a cancel is pending): ``check_interrupts()`` longjmps through Python and
crashes the cluster later, and a NOTICE/WARNING/DEBUG report made while a cancel is pending breaks
every later Python call in the backend.  So cancels are polled by reading PostgreSQL's flags, and
non-error reports and catalog reads hold interrupts.

The backend's thread is Python's main thread: Multicorn initialises Python in it
(docs/multicorn.md M8: threads run only while the backend is in Python).
Outside a backend (unit tests, the CLI) the symbols are absent: the flags read as unset,
reports go straight to the logger, and what only a backend knows is an error or None.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import CognitoFdwError, CredentialError

T = TypeVar("T")


class OffBackendThread(CognitoFdwError):
    """A call into PostgreSQL was attempted from a thread other than the backend's."""


def on_backend_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def require_backend_thread(what: str) -> None:
    """Raise :class:`OffBackendThread` naming ``what`` unless on the backend's thread."""
    if not on_backend_thread():
        raise OffBackendThread(
            f"cognito_fdw internal error: {what} called from thread "
            f"{threading.current_thread().name}; only the backend's own thread may call "
            "into PostgreSQL",
            hint="This is a bug in cognito_fdw: please report it with the query.",
        )


def backend_thread_only(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, refusing to run on any thread but the backend's (the error names it as
    ``module.function``)."""

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        require_backend_thread(f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}")
        return fn(*args, **kwargs)

    return guarded


def c_variable(name: str, ctype):
    """A global variable of the backend, or None outside one."""
    try:
        return ctype.in_dll(ctypes.CDLL(None), name)
    except (ValueError, OSError):
        return None


def c_function(name: str, restype, argtypes):
    """A C function of the backend, or None outside one, called only from guarded functions (here
    and in :mod:`catalog`).  An ERROR raised in one would longjmp through Python (docs/multicorn.md
    H2: check_interrupts longjmps through Python): only functions that raise none for any input
    given here, interrupts held where a cancel could (what remains is what any C code in the backend
    risks: running out of memory, a corrupt catalog)."""
    try:
        found = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    found.restype = restype
    found.argtypes = argtypes
    return found


# Read from any thread (plain ints):
_interrupt_pending = c_variable("InterruptPending", ctypes.c_int)
_cancel_pending = c_variable("QueryCancelPending", ctypes.c_int)
_die_pending = c_variable("ProcDiePending", ctypes.c_int)
# Backend's thread only:
_holdoff = c_variable("InterruptHoldoffCount", ctypes.c_uint32)
_database_id = c_variable("MyDatabaseId", ctypes.c_uint32)
_port = c_variable("PostPortNumber", ctypes.c_int)
_socket_dirs = c_variable("Unix_socket_directories", ctypes.c_char_p)
_data_dir = c_variable("DataDir", ctypes.c_char_p)
_statement_start = c_function("GetCurrentStatementStartTimestamp", ctypes.c_int64, [])
_transaction_start = c_function("GetCurrentTransactionStartTimestamp", ctypes.c_int64, [])
_get_user_id = c_function("GetUserId", ctypes.c_uint32, [])
_user_name = c_function("GetUserNameFromId", ctypes.c_char_p, [ctypes.c_uint32, ctypes.c_bool])
_database_name = c_function("get_database_name", ctypes.c_char_p, [ctypes.c_uint32])
_encoding_name = c_function("GetDatabaseEncodingName", ctypes.c_char_p, [])
_encoding: list[str] = []  # read once: a backend serves one database all its life
# Where a report would go (the GUCs' current values, plain ints): backend's thread only.
_client_min_messages = c_variable("client_min_messages", ctypes.c_int)
_log_min_messages = c_variable("log_min_messages", ctypes.c_int)


def in_backend() -> bool:
    """True inside a PostgreSQL backend (its symbols are there), False in plain Python."""
    return _holdoff is not None


# For current_role_is_superuser:
_in_transaction = c_function("IsTransactionState", ctypes.c_bool, [])


_ignoring_cancels = False


@contextlib.contextmanager
def cancels_ignored():
    """Requests that must go out whatever the statement's state (undoing what a failed
    COMMIT sent, while the cancel that failed it is still pending): :func:`cancel_pending`
    answers False inside, so nothing stops waiting for a cancel; every request is still
    bounded by its deadline (``request_deadline``).  Backend's thread only."""
    global _ignoring_cancels
    before, _ignoring_cancels = _ignoring_cancels, True
    try:
        yield
    finally:
        _ignoring_cancels = before


def cancel_pending() -> bool:
    """True when the statement is being cancelled (cancel, timeout) or the backend is dying.

    The one function any thread may call: it only reads three int variables.
    """
    if _ignoring_cancels:
        return False
    if _interrupt_pending is None or _cancel_pending is None or _die_pending is None:
        return False
    return bool(_interrupt_pending.value and (_cancel_pending.value or _die_pending.value))


class Cancelled(CognitoFdwError):
    """The statement was cancelled (cancel request, statement_timeout, shutdown) while the
    wrapper waited: for Cognito, for a scan worker's page or for a request-rate slot."""


class DeadlinePassed(Exception):
    """A request's deadline passed before it was answered (the caller names the request)."""


def run_cancellable(
    call: Callable[[], T], poll_seconds: float = 0.05, deadline: float | None = None
) -> T:
    """Run a blocking request in a helper thread; poll for a cancel in the backend's thread.

    A stalled endpoint would otherwise hold a cancel or statement_timeout for a whole read
    timeout per retry.  On a cancel the request is abandoned (its thread ends with its own
    timeout, touching nothing of PostgreSQL) and :class:`Cancelled` unwinds the scan.
    ``deadline`` (``time.monotonic()`` seconds), on any thread: waiting stops there and
    :class:`DeadlinePassed` is raised, the request abandoned alike.  ``call`` runs in the
    helper thread, so it must already hold everything it needs (the bound client method and
    its parameters): it must not resolve credentials.
    """
    # Outside a backend nothing cancels; in a scan worker, the backend's thread is the one
    # polling (while it waits for the workers' pages).
    polling = _interrupt_pending is not None and on_backend_thread()
    if not polling and deadline is None:
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
    while not done.wait(poll_seconds if polling else max(0.0, deadline - time.monotonic())):
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlinePassed()
        if polling and cancel_pending():
            raise Cancelled(
                "canceling statement: cognito_fdw stopped waiting for Cognito",
                hint="The statement was cancelled (pg_cancel_backend, statement_timeout or "
                "shutdown) while a request was in flight; the session stays usable.",
            )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@backend_thread_only
def statement_started() -> int | None:
    """When the running statement started (microseconds), identifying it; None outside."""
    return None if _statement_start is None else _statement_start()


@backend_thread_only
def transaction_started() -> int | None:
    """When the running transaction started (microseconds); None outside.  Inside a
    procedure each COMMIT starts a transaction with a time of its own."""
    return None if _transaction_start is None else _transaction_start()


@contextlib.contextmanager
def interrupts_held():
    """PostgreSQL's HOLD_INTERRUPTS(): a CHECK_FOR_INTERRUPTS() inside does nothing, so a pending
    cancel cannot longjmp through Python (docs/multicorn.md H2: check_interrupts longjmps through
    Python; H3: no report while a cancel is pending); it is served at the next check after this."""
    if _holdoff is None:
        yield
        return
    _holdoff.value += 1
    try:
        yield
    finally:
        _holdoff.value -= 1


# PostgreSQL's elevels (utils/elog.h; the same numbers from PostgreSQL 14 to 18), and the one
# Multicorn's log_to_postgres turns each Python level into (its utils.c).
_DEBUG1, _LOG, _NOTICE, _WARNING, _FATAL = 14, 15, 18, 19, 22
_ELEVELS = {logging.DEBUG: _DEBUG1, logging.INFO: _NOTICE, logging.WARNING: _WARNING}


def shown(level) -> bool:
    """Whether PostgreSQL would send a report at Multicorn's ``level`` (logging.DEBUG, INFO,
    WARNING) to the client or to the server log, as its ``errstart()`` decides: at or above
    ``client_min_messages``, or what ``is_log_level_output()`` says of ``log_min_messages``
    (which, set to LOG, logs nothing below FATAL but LOG itself).  True outside a backend."""
    if _client_min_messages is None or _log_min_messages is None:
        return True
    elevel = _ELEVELS[level]
    log_min = _log_min_messages.value
    to_log = elevel >= _FATAL if log_min == _LOG else elevel >= log_min
    return elevel >= _client_min_messages.value or to_log


# Multicorn2 3.2's non-error log_to_postgres crashes the backend on Python 3.14 and later
# (docs/multicorn.md H15: every non-error log call leaks its message, and crashes on 3.14):
# any role could end every session with SET client_min_messages = debug1.
LOG_CALL_CRASHES = sys.version_info >= (3, 14)


@backend_thread_only
def report(log, message: str, level) -> None:
    """``log_to_postgres`` at a non-error level, with interrupts held (docs/multicorn.md H3: no
    report while a cancel is pending), and only when the client or the server log would show it:
    Multicorn2 3.2 leaks every message it is handed, shown or not, and its non-error calls crash
    on Python 3.14 (docs/multicorn.md H15: every non-error log call leaks its message).
    """
    if not shown(level):
        return
    if LOG_CALL_CRASHES:
        # There the line goes to the backend's stderr, which the server logs (its
        # log_destination stderr, or the file pg_ctl -l and Docker keep); the client sees none.
        print(f"{logging.getLevelName(level)}:  {message}", file=sys.stderr, flush=True)
        return
    with interrupts_held():
        log(message, level)


@backend_thread_only
def current_role() -> tuple[int, str]:
    """The backend's current role (after SET ROLE and inside SECURITY DEFINER): oid, name.

    Raises CredentialError outside a backend, or for a role without a name.
    """
    if _get_user_id is None or _user_name is None:
        raise CredentialError(
            "api_key_id/api_key_name can only be read inside a PostgreSQL backend",
            hint="Use the wrapper from PostgreSQL.",
        )
    oid = _get_user_id()
    name = _user_name(oid, True)  # noerr: a NULL, never an ERROR longjmp through Python
    if name is None:
        raise CredentialError(f"the current role (oid {oid}) has no name")
    return oid, name.decode()


@backend_thread_only
def server_address() -> dict[str, str]:
    """libpq's host (the first Unix socket directory), port and dbname of this backend's own
    server and database, as far as known (an empty dict outside a backend)."""
    address = {}
    if _database_id is not None and _database_name is not None:
        name = _database_name(_database_id.value)
        if name is not None:
            address["dbname"] = name.decode()
    if _port is not None:
        address["port"] = str(_port.value)
    sockets = (_socket_dirs.value or b"").decode() if _socket_dirs is not None else ""
    first = sockets.split(",")[0].strip()
    if first:
        address["host"] = first
    return address


@backend_thread_only
def database_encoding() -> str | None:
    """The database encoding as PostgreSQL names it (``UTF8``, ``LATIN1``, ``SQL_ASCII``),
    read once per backend; None outside a backend."""
    if _encoding_name is None:
        return None
    if not _encoding:
        _encoding.append(_encoding_name().decode("ascii"))
    return _encoding[0]


@backend_thread_only
def data_directory() -> str | None:
    """The server's data directory (PostgreSQL's ``DataDir``, absolute), or None outside."""
    if _data_dir is None or not _data_dir.value:
        return None
    return os.fsdecode(_data_dir.value)


_superuser = c_function("superuser", ctypes.c_bool, [])


@backend_thread_only
def current_role_is_superuser() -> bool:
    """True when the backend's current role (after SET ROLE, inside SECURITY DEFINER) is a
    superuser; False outside a backend, or outside a healthy transaction (an aborted one
    must not read the catalog, and saying no is the safe answer).

    PostgreSQL's ``superuser()`` reads the role's cached catalog row; it raises no ERROR for
    a role that is gone (it answers false), and interrupts are held around it.
    """
    if _superuser is None or _in_transaction is None or _holdoff is None:
        return False
    with interrupts_held():
        return bool(_in_transaction() and _superuser())


_has_privs_of_role = c_function("has_privs_of_role", ctypes.c_bool, [ctypes.c_uint32] * 2)
#: The predefined role pg_monitor's OID (catalog/pg_authid.dat), the same since PostgreSQL 10.
PG_MONITOR = 3373


@backend_thread_only
def current_role_may_monitor() -> bool:
    """True when the backend's current role is a superuser or has pg_monitor's privileges
    (directly or through membership); False outside a backend or a healthy transaction.

    ``has_privs_of_role`` reads the role memberships' catalog cache and raises no ERROR for a
    role that is gone; interrupts are held around it.
    """
    if current_role_is_superuser():
        return True
    if None in (_has_privs_of_role, _get_user_id, _in_transaction, _holdoff):
        return False
    with interrupts_held():
        return bool(_in_transaction() and _has_privs_of_role(_get_user_id(), PG_MONITOR))
