"""What the wrapper reads from the catalogs and from Multicorn's memory, through ctypes: the
database's nondeterministic collations, and the name of the foreign table a wrapper
instance serves.

Each read runs on the backend's thread only, with interrupts held, and in C functions that
raise no ERROR for any input given here (the rules of :mod:`backend`, docs/multicorn.md H2,
H8); outside a backend the symbols are absent and each answers as documented.
"""

from __future__ import annotations

import ctypes

from .backend import (
    backend_thread_only,
    c_function,
    c_variable,
    database_encoding,
    in_backend,
    interrupts_held,
)

# A catalog scan of pg_collation (see nondeterministic_collations):
_conditional_lock = c_function(
    "ConditionalLockRelationOid", ctypes.c_bool, [ctypes.c_uint32, ctypes.c_int]
)
_table_open = c_function("table_open", ctypes.c_void_p, [ctypes.c_uint32, ctypes.c_int])
_table_close = c_function("table_close", None, [ctypes.c_void_p, ctypes.c_int])
_get_attnum = c_function("get_attnum", ctypes.c_int16, [ctypes.c_uint32, ctypes.c_char_p])
_scan_key_init = c_function(
    "ScanKeyInit",
    None,
    [ctypes.c_void_p, ctypes.c_int16, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_size_t],
)
_begin_scan = c_function(
    "systable_beginscan",
    ctypes.c_void_p,
    [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_bool, ctypes.c_void_p, ctypes.c_int,
     ctypes.c_void_p],
)  # fmt: skip
_next_tuple = c_function("systable_getnext", ctypes.c_void_p, [ctypes.c_void_p])
_end_scan = c_function("systable_endscan", None, [ctypes.c_void_p])
# Multicorn's wrapper instances, and what names a table (see foreign_table_name):
_instances = c_variable("InstancesHash", ctypes.c_void_p)
_seq_init = c_function("hash_seq_init", None, [ctypes.c_void_p, ctypes.c_void_p])
_seq_search = c_function("hash_seq_search", ctypes.c_void_p, [ctypes.c_void_p])
_seq_term = c_function("hash_seq_term", None, [ctypes.c_void_p])
# These return NULL (or InvalidOid) for a relation or schema that does not exist; the
# strings they return are palloc'd, and freed here (so char * is a void *).
_rel_name = c_function("get_rel_name", ctypes.c_void_p, [ctypes.c_uint32])
_rel_namespace = c_function("get_rel_namespace", ctypes.c_uint32, [ctypes.c_uint32])
_namespace_name = c_function("get_namespace_name", ctypes.c_void_p, [ctypes.c_uint32])
_quote_qualified = c_function(
    "quote_qualified_identifier", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p]
)
_pfree = c_function("pfree", None, [ctypes.c_void_p])


class _CacheEntry(ctypes.Structure):
    """The head of an entry of Multicorn's ``InstancesHash`` (``CacheEntry`` in its
    ``src/multicorn.h``): the foreign table's OID and its wrapper instance, a
    ``PyObject *`` that is NULL while the instance is being made."""

    _fields_ = [("hashkey", ctypes.c_uint32), ("value", ctypes.c_void_p)]


class _SeqStatus(ctypes.Structure):
    """Room for a ``HASH_SEQ_STATUS`` (24 bytes in PostgreSQL 15, a little more in later
    versions), pointer-aligned."""

    _fields_ = [("space", ctypes.c_void_p * 8)]


_in_transaction = c_function("IsTransactionState", ctypes.c_bool, [])


@backend_thread_only
def foreign_table_oid(instance: object) -> int | None:
    """The OID of the foreign table whose Multicorn wrapper instance is ``instance``, or
    None (the cases of :func:`foreign_table_name`, but for a dropped table: the OID is
    still the one Multicorn made the instance for)."""
    if _instances is None or None in (_seq_init, _in_transaction):
        return None
    if not _instances.value or not _in_transaction():
        return None
    return _table_of(id(instance))


@backend_thread_only
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
    if _rel_name is None:
        return None
    oid = foreign_table_oid(instance)
    if oid is None:
        return None
    with interrupts_held():
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


@backend_thread_only
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
                 _begin_scan, _next_tuple, _end_scan)  # fmt: skip
    if not in_backend() or any(f is None for f in functions):
        return ()
    with interrupts_held():
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
