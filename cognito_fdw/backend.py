"""Everything the wrapper asks of the PostgreSQL backend it runs in, through ctypes.

**Only the backend's own thread calls into PostgreSQL** (docs/multicorn.md H8).  The
backend is single-threaded: a C function called from another thread (ctypes releases the
GIL around the call) races the backend on its catalog caches and memory contexts, and
crashed the cluster.  So every call into PostgreSQL lives here, and each one refuses to run
on any other thread with :class:`OffBackendThread` (a bug guard: the wrapper resolves what
its threads need before it starts them, see :mod:`cognito_fdw.scan`).  The one thing any
thread may do is :func:`cancel_pending`, which only reads plain variables.

Two more measured hazards shape this (docs/multicorn.md H2, H3): ``check_interrupts()``
longjmps through Python and crashes the cluster later, and a NOTICE/WARNING/DEBUG report made
while a cancel is pending breaks every later Python call in the backend.  So cancels are
polled by reading PostgreSQL's flags, and non-error reports and catalog reads hold
interrupts.

The backend's thread is Python's main thread: Multicorn initialises Python in it
(docs/multicorn.md M8).
Outside a backend (unit tests, the CLI) the symbols are absent: the flags read as unset,
reports go straight to the logger, and what only a backend knows is an error or None.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import CognitoFdwError, CredentialError

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


def _backend_thread_only(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        require_backend_thread(f"backend.{fn.__name__}")
        return fn(*args, **kwargs)

    return guarded


def _variable(name: str, ctype):
    """A global variable of the backend, or None outside one."""
    try:
        return ctype.in_dll(ctypes.CDLL(None), name)
    except (ValueError, OSError):
        return None


def _function(name: str, restype, argtypes):
    """A C function of the backend, or None outside one, called only from the guarded
    functions below.  An ERROR raised in one would longjmp through Python (docs/multicorn.md
    H2): only functions that raise none for any input given here, interrupts held where a
    cancel could (what remains is what any C code in the backend risks: running out of
    memory, a corrupt catalog)."""
    try:
        found = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    found.restype = restype
    found.argtypes = argtypes
    return found


# Read from any thread (plain ints):
_interrupt_pending = _variable("InterruptPending", ctypes.c_int)
_cancel_pending = _variable("QueryCancelPending", ctypes.c_int)
_die_pending = _variable("ProcDiePending", ctypes.c_int)
# Backend's thread only:
_holdoff = _variable("InterruptHoldoffCount", ctypes.c_uint32)
_database_id = _variable("MyDatabaseId", ctypes.c_uint32)
_port = _variable("PostPortNumber", ctypes.c_int)
_socket_dirs = _variable("Unix_socket_directories", ctypes.c_char_p)
_data_dir = _variable("DataDir", ctypes.c_char_p)
_statement_start = _function("GetCurrentStatementStartTimestamp", ctypes.c_int64, [])
_get_user_id = _function("GetUserId", ctypes.c_uint32, [])
_user_name = _function("GetUserNameFromId", ctypes.c_char_p, [ctypes.c_uint32, ctypes.c_bool])
_database_name = _function("get_database_name", ctypes.c_char_p, [ctypes.c_uint32])
_encoding_name = _function("GetDatabaseEncodingName", ctypes.c_char_p, [])
_encoding: list[str] = []  # read once: a backend serves one database all its life
# A catalog scan of pg_collation (see nondeterministic_collations):
_conditional_lock = _function(
    "ConditionalLockRelationOid", ctypes.c_bool, [ctypes.c_uint32, ctypes.c_int]
)
_table_open = _function("table_open", ctypes.c_void_p, [ctypes.c_uint32, ctypes.c_int])
_table_close = _function("table_close", None, [ctypes.c_void_p, ctypes.c_int])
_get_attnum = _function("get_attnum", ctypes.c_int16, [ctypes.c_uint32, ctypes.c_char_p])
_scan_key_init = _function(
    "ScanKeyInit",
    None,
    [ctypes.c_void_p, ctypes.c_int16, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_size_t],
)
_begin_scan = _function(
    "systable_beginscan",
    ctypes.c_void_p,
    [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_bool, ctypes.c_void_p, ctypes.c_int,
     ctypes.c_void_p],
)  # fmt: skip
_next_tuple = _function("systable_getnext", ctypes.c_void_p, [ctypes.c_void_p])
_end_scan = _function("systable_endscan", None, [ctypes.c_void_p])


def in_backend() -> bool:
    """True inside a PostgreSQL backend (its symbols are there), False in plain Python."""
    return _holdoff is not None


# Multicorn's wrapper instances, and what names a table (see foreign_table_name):
_instances = _variable("InstancesHash", ctypes.c_void_p)
_seq_init = _function("hash_seq_init", None, [ctypes.c_void_p, ctypes.c_void_p])
_seq_search = _function("hash_seq_search", ctypes.c_void_p, [ctypes.c_void_p])
_seq_term = _function("hash_seq_term", None, [ctypes.c_void_p])
_in_transaction = _function("IsTransactionState", ctypes.c_bool, [])
# These return NULL (or InvalidOid) for a relation or schema that does not exist; the
# strings they return are palloc'd, and freed here (so char * is a void *).
_rel_name = _function("get_rel_name", ctypes.c_void_p, [ctypes.c_uint32])
_rel_namespace = _function("get_rel_namespace", ctypes.c_uint32, [ctypes.c_uint32])
_namespace_name = _function("get_namespace_name", ctypes.c_void_p, [ctypes.c_uint32])
_quote_qualified = _function(
    "quote_qualified_identifier", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p]
)
_pfree = _function("pfree", None, [ctypes.c_void_p])


class _CacheEntry(ctypes.Structure):
    """The head of an entry of Multicorn's ``InstancesHash`` (``CacheEntry`` in its
    ``src/multicorn.h``): the foreign table's OID and its wrapper instance, a
    ``PyObject *`` that is NULL while the instance is being made."""

    _fields_ = [("hashkey", ctypes.c_uint32), ("value", ctypes.c_void_p)]


class _SeqStatus(ctypes.Structure):
    """Room for a ``HASH_SEQ_STATUS`` (24 bytes in PostgreSQL 15, a little more in later
    versions), pointer-aligned."""

    _fields_ = [("space", ctypes.c_void_p * 8)]


def cancel_pending() -> bool:
    """True when the statement is being cancelled (cancel, timeout) or the backend is dying.

    The one function any thread may call: it only reads three int variables.
    """
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


@_backend_thread_only
def statement_started() -> int | None:
    """When the running statement started (microseconds), identifying it; None outside."""
    return None if _statement_start is None else _statement_start()


@contextlib.contextmanager
def _interrupts_held():
    """PostgreSQL's HOLD_INTERRUPTS(): a CHECK_FOR_INTERRUPTS() inside does nothing, so a
    pending cancel cannot longjmp through Python (docs/multicorn.md H2, H3); it is served
    at the next check after this."""
    if _holdoff is None:
        yield
        return
    _holdoff.value += 1
    try:
        yield
    finally:
        _holdoff.value -= 1


@_backend_thread_only
def report(log, message: str, level) -> None:
    """``log_to_postgres`` at a non-error level, with interrupts held (docs/multicorn.md H3)."""
    with _interrupts_held():
        log(message, level)


@_backend_thread_only
def foreign_table_name(instance: object) -> str | None:
    """The schema-qualified, quoted name of the foreign table whose Multicorn wrapper
    instance is ``instance`` (``cognito."Mixed Case"``), or None: outside a backend or a
    transaction, while the instance is being made (Multicorn records it only once its
    ``__init__`` returned), or when its table no longer exists (Multicorn keeps the instance
    of a dropped table).

    Multicorn passes no table OID to Python, but its ``InstancesHash`` maps each foreign
    table's OID to its instance (docs/multicorn.md M3): the table is the entry whose
    instance is this object (docs/multicorn.md M13).  The walk reads the hash and nothing
    else; the catalog lookups come after it, with interrupts held, and return NULL rather
    than raise for a relation that does not exist.
    """
    if _instances is None or None in (_seq_init, _rel_name, _in_transaction):
        return None
    if not _instances.value or not _in_transaction():
        return None
    oid = _table_of(id(instance))
    if oid is None:
        return None
    with _interrupts_held():
        return _qualified_name(oid)


def _table_of(address: int) -> int | None:
    """The OID whose InstancesHash entry holds the Python object at ``address``."""
    status = _SeqStatus()
    _seq_init(ctypes.byref(status), _instances.value)
    while entry := _seq_search(ctypes.byref(status)):
        found = _CacheEntry.from_address(entry)
        if found.value == address:
            _seq_term(ctypes.byref(status))  # a walk stopped early must say so
            return found.hashkey
    return None  # hash_seq_search ended the walk itself


def _decoded(name: bytes) -> str:
    """A name from the catalog, which holds it in the database encoding."""
    encoding = database_encoding()
    try:
        return name.decode("ascii" if encoding == "SQL_ASCII" else encoding or "utf-8", "replace")
    except LookupError:  # an encoding Python has no codec of that name for
        return name.decode("utf-8", "replace")


def _qualified_name(oid: int) -> str | None:
    relation = _rel_name(oid)
    if not relation:
        return None
    schema = _namespace_name(_rel_namespace(oid))
    try:
        if not schema:
            return None
        quoted = _quote_qualified(schema, relation)
        try:
            return _decoded(ctypes.string_at(quoted))
        finally:
            _pfree(quoted)
    finally:
        _pfree(relation)
        if schema:
            _pfree(schema)


@_backend_thread_only
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


@_backend_thread_only
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


@_backend_thread_only
def database_encoding() -> str | None:
    """The database encoding as PostgreSQL names it (``UTF8``, ``LATIN1``, ``SQL_ASCII``),
    read once per backend; None outside a backend."""
    if _encoding_name is None:
        return None
    if not _encoding:
        _encoding.append(_encoding_name().decode("ascii"))
    return _encoding[0]


@_backend_thread_only
def data_directory() -> str | None:
    """The server's data directory (PostgreSQL's ``DataDir``, absolute), or None outside."""
    if _data_dir is None or not _data_dir.value:
        return None
    return os.fsdecode(_data_dir.value)


# PostgreSQL's fixed numbers (catalog/pg_collation.h, utils/fmgroids.h, storage/lockdefs.h,
# access/stratnum.h), the same in every release since 12.
_COLLATION_RELATION = 3456  # pg_collation
_BOOLEQ = 60  # booleq(bool, bool)
_BT_EQUAL = 3  # BTEqualStrategyNumber
_NO_LOCK, _ACCESS_SHARE = 0, 1
# FormData_pg_collation starts oid (4 bytes), collname (NameData, 64), collnamespace,
# collowner (4 each), collprovider (1), collisdeterministic (1).
_NAME_AT, _NAME_LENGTH, _DETERMINISTIC_AT = 4, 64, 77
UNKNOWN_COLLATIONS = ("(pg_collation could not be read)",)


@_backend_thread_only
def nondeterministic_collations() -> tuple[str, ...]:
    """The names of the database's nondeterministic collations (``pg_collation`` rows with
    ``collisdeterministic = false``), read now from the catalog; () outside a backend.

    Multicorn passes no collation with a condition (docs/multicorn.md H10); a comparison can
    only be made under a nondeterministic collation if one exists, so none existing proves
    every comparison exact.  Read on every call, never cached: a collation created a moment
    ago (in this statement, or committed by another session) must be seen.  The scan runs
    in C with the filter as a scan key (about 0.1 ms for 800 rows); interrupts are held
    around it, so a cancel or statement_timeout cannot jump out of it (docs/multicorn.md H2),
    and the table lock is only taken if it is free at once (a lock wait with interrupts
    held could not be cancelled).  When the catalog cannot be read that way (the lock is
    taken, the layout is not the expected one) the answer is :data:`UNKNOWN_COLLATIONS`,
    which callers treat as a nondeterministic collation: they push nothing that depends on it.
    """
    functions = (_conditional_lock, _table_open, _table_close, _get_attnum, _scan_key_init,
                 _begin_scan, _next_tuple, _end_scan, _holdoff)  # fmt: skip
    if any(f is None for f in functions):
        return ()
    with _interrupts_held():
        return _scan_collations()


def _scan_collations() -> tuple[str, ...]:
    attnum = _get_attnum(_COLLATION_RELATION, b"collisdeterministic")
    if attnum <= 0 or not _conditional_lock(_COLLATION_RELATION, _ACCESS_SHARE):
        return UNKNOWN_COLLATIONS
    relation = _table_open(_COLLATION_RELATION, _NO_LOCK)  # locked just above
    key = ctypes.create_string_buffer(256)  # a ScanKeyData is 72 bytes on 64-bit builds
    _scan_key_init(key, attnum, _BT_EQUAL, _BOOLEQ, 0)  # collisdeterministic = false
    scan = _begin_scan(relation, 0, False, None, 1, key)
    names, layout_ok = [], True
    try:
        while tuple_ := _next_tuple(scan):
            # HeapTupleData.t_data (after t_len, t_self, t_tableOid), then the header's
            # t_hoff: where the row's fixed-width columns start.
            header = ctypes.c_void_p.from_address(tuple_ + 16).value
            row = header + ctypes.c_uint8.from_address(header + 22).value
            if ctypes.c_uint8.from_address(row + _DETERMINISTIC_AT).value != 0:
                layout_ok = False  # the scan key chose it: not the layout read here
                continue
            name = ctypes.string_at(row + _NAME_AT, _NAME_LENGTH).split(b"\0", 1)[0]
            names.append(name.decode("utf-8", "replace"))
    finally:
        _end_scan(scan)
        _table_close(relation, _NO_LOCK)  # the lock is kept to the end of the transaction
    return tuple(sorted(set(names))) if layout_ok else UNKNOWN_COLLATIONS


_superuser = _function("superuser", ctypes.c_bool, [])


@_backend_thread_only
def current_role_is_superuser() -> bool:
    """True when the backend's current role (after SET ROLE, inside SECURITY DEFINER) is a
    superuser; False outside a backend, or outside a healthy transaction (an aborted one
    must not read the catalog, and saying no is the safe answer).

    PostgreSQL's ``superuser()`` reads the role's cached catalog row; it raises no ERROR for
    a role that is gone (it answers false), and interrupts are held around it.
    """
    if _superuser is None or _in_transaction is None or _holdoff is None:
        return False
    with _interrupts_held():
        return bool(_in_transaction() and _superuser())
