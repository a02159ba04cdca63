"""What the wrapper reads from the catalogs and from PostgreSQL's memory, through ctypes: the
database's nondeterministic collations, and the foreign table a wrapper instance serves.

Each read runs on the backend's thread only, with interrupts held, and in C functions that raise no
ERROR for any input given here (the rules of :mod:`backend`, docs/multicorn.md H2: check_interrupts
longjmps through Python; H8: no PostgreSQL call off the backend thread); outside a backend the
symbols are absent and each answers as documented.
"""

from __future__ import annotations

import ctypes
import weakref

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
# Whether a schema is another session's temporary one (pg_temp_N, pg_toast_temp_N); reads
# the schema's name from the syscache, NULL-safe for one that is gone.
_other_temp = c_function("isOtherTempNamespace", ctypes.c_bool, [ctypes.c_uint32])
# Which foreign table a wrapper instance serves (see remember_table, foreign_table_name):
_resource_owner = c_variable("CurrentResourceOwner", ctypes.c_void_p)
_config_option = c_function(
    "GetConfigOption", ctypes.c_char_p, [ctypes.c_char_p, ctypes.c_bool, ctypes.c_bool]
)
_rel_kind = c_function("get_rel_relkind", ctypes.c_char, [ctypes.c_uint32])
# These return NULL (or InvalidOid) for a relation or schema that does not exist; the
# strings they return are palloc'd, and freed here (so char * is a void *).
_rel_name = c_function("get_rel_name", ctypes.c_void_p, [ctypes.c_uint32])
_rel_namespace = c_function("get_rel_namespace", ctypes.c_uint32, [ctypes.c_uint32])
_namespace_name = c_function("get_namespace_name", ctypes.c_void_p, [ctypes.c_uint32])
_quote_qualified = c_function(
    "quote_qualified_identifier", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p]
)
_pfree = c_function("pfree", None, [ctypes.c_void_p])
_in_transaction = c_function("IsTransactionState", ctypes.c_bool, [])

# PostgreSQL's own structures (all exported by the server itself; nothing of Multicorn's):
# the OID in a RelationData (after rd_locator, rd_smgr, rd_refcnt, rd_backend, five bools,
# four SubTransactionIds, rd_rel and rd_att: the same from 15 to 18).
_RD_ID_AT = 72
# Through 16, a ResourceOwnerData (parent, firstchild, nextchild, name, then one
# ResourceArray per kind) keeps its relcache references in relrefarr; 16 added bufferioarr
# before it.  A ResourceArray is {Datum *itemsarr; Datum invalidval; uint32 capacity,
# nitems, maxitems, lastidx}, and lastidx is where the last reference was added.
_RELREFARR_AT = {15: 128, 16: 160}
# From 17 on, one array of the most recent references of every kind: narr (a uint8) at 35,
# then arr[32] of {Datum item; const ResourceOwnerDesc *kind} at 40, the newest at narr - 1;
# a kind's first field is its name.
_NARR_AT, _ARR_AT, _RELREF_KIND = 35, 40, b"relcache reference"
_FOREIGN_TABLE = b"f"  # pg_class.relkind

_tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _major() -> int | None:
    version = _config_option(b"server_version_num", True, False)
    return int(version) // 10000 if version else None


def _newest_relation() -> int | None:
    """The address of the relation the current resource owner was last given a reference
    to, or None where PostgreSQL's layout is not one known here."""
    owner, major = _resource_owner.value, _major()
    if not owner or major is None:
        return None
    if major in _RELREFARR_AT:
        at = owner + _RELREFARR_AT[major]
        items = ctypes.c_void_p.from_address(at).value
        capacity, nitems, _, last = (ctypes.c_uint32 * 4).from_address(at + 16)
        if not items or not nitems or last >= capacity:
            return None
        return ctypes.c_void_p.from_address(items + 8 * last).value
    if major >= 17:
        count = ctypes.c_uint8.from_address(owner + _NARR_AT).value
        if not 0 < count <= 32:
            return None
        item, kind = (ctypes.c_void_p * 2).from_address(owner + _ARR_AT + 16 * (count - 1))
        name = ctypes.c_void_p.from_address(kind).value if kind else None
        if not name or ctypes.string_at(name, len(_RELREF_KIND) + 1) != _RELREF_KIND + b"\0":
            return None
        return item
    return None


@backend_thread_only
def remember_table(instance: object) -> None:
    """Note which foreign table ``instance`` serves; called from the wrapper's ``__init__``.

    Multicorn passes no table OID to Python, but it makes an instance only in
    ``getCacheEntry``, right after ``RelationIdGetRelation`` opened the foreign table: the
    newest relcache reference of the current resource owner is that table's
    (docs/multicorn.md M13: the table from the resource owner).  It is checked to be a foreign
    table before it is kept; the OID is kept, not the name, so that a rename is seen.  Only
    PostgreSQL's exported structures are read (16 and later hide Multicorn's own symbols).
    """
    if _resource_owner is None or None in (_config_option, _rel_kind, _in_transaction):
        return
    if not _in_transaction():
        return
    relation = _newest_relation()
    if not relation:
        return
    oid = ctypes.c_uint32.from_address(relation + _RD_ID_AT).value
    if oid and _rel_kind(oid) == _FOREIGN_TABLE:
        _tables[instance] = oid


def foreign_table_oid(instance: object) -> int | None:
    """The OID of the foreign table whose wrapper instance is ``instance``, as
    :func:`remember_table` noted it, or None."""
    try:
        return _tables.get(instance)
    except TypeError:  # not weakly referenceable: never noted
        return None


@backend_thread_only
def foreign_table_name(instance: object) -> str | None:
    """The schema-qualified, quoted name of the foreign table whose Multicorn wrapper
    instance is ``instance`` (``cognito."Mixed Case"``), or None: outside a backend or a
    transaction, for an instance whose table was not noted (:func:`remember_table`), or
    when its table no longer exists (Multicorn keeps the instance of a dropped table).

    The catalog lookups run with interrupts held, and return NULL rather than raise for a
    relation that does not exist.
    """
    oid = foreign_table_oid(instance)
    if oid is None or None in (_rel_name, _in_transaction) or not _in_transaction():
        return None
    with interrupts_held():
        return _qualified_name(oid)


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
_NAME_AT, _NAME_LENGTH, _NAMESPACE_AT, _DETERMINISTIC_AT = 4, 64, 68, 77
UNKNOWN_COLLATIONS = ("(pg_collation could not be read)",)


@backend_thread_only
def nondeterministic_collations() -> tuple[str, ...]:
    """The names of the database's nondeterministic collations (``pg_collation`` rows with
    ``collisdeterministic = false``), read now from the catalog; () outside a backend.
    Another session's temporary collations are left out: no statement of this session can
    name them (its own temporary ones count).

    Multicorn passes no collation with a condition (docs/multicorn.md H10: quals carry no
    collation); a comparison can only be made under a nondeterministic collation if one exists, so
    none existing proves every comparison exact.  Read on every call, never cached: a collation
    created a moment ago (in this statement, or committed by another session) must be seen.  The
    scan runs in C with the filter as a scan key (about 0.1 ms for 800 rows); interrupts are held
    around it, so a cancel or statement_timeout cannot jump out of it (docs/multicorn.md H2:
    check_interrupts longjmps through Python), and the table lock is only taken if it is free at
    once (a lock wait with interrupts held could not be cancelled).  When the catalog cannot be read
    that way (the lock is taken, the layout is not the expected one) the answer is
    :data:`UNKNOWN_COLLATIONS`, which callers treat as a nondeterministic collation: they push
    nothing that depends on it.
    """
    functions = (_conditional_lock, _table_open, _table_close, _get_attnum, _scan_key_init,
                 _begin_scan, _next_tuple, _end_scan, _other_temp)  # fmt: skip
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
            if _other_temp(ctypes.c_uint32.from_address(row + _NAMESPACE_AT).value):
                continue  # another session's pg_temp: invisible to this one's statements
            name = ctypes.string_at(row + _NAME_AT, _NAME_LENGTH).split(b"\0", 1)[0]
            names.append(name.decode("utf-8", "replace"))
    finally:
        _end_scan(scan)
        _table_close(relation, _NO_LOCK)  # the lock is kept to the end of the transaction
    return tuple(sorted(set(names))) if layout_ok else UNKNOWN_COLLATIONS
