"""The table protocol: what one foreign table answers, whatever object it reads.

``fdw.py`` turns each Multicorn hook into one call on a :class:`Table`: planning
(:meth:`~Table.rel_size`, :meth:`~Table.path_keys`, :meth:`~Table.can_limit`), EXPLAIN
(:meth:`~Table.explain`), the scan (:meth:`~Table.rows`, :meth:`~Table.end_scan`) and
writes (:meth:`~Table.rowid_column`, :meth:`~Table.insert`, :meth:`~Table.delete`,
:meth:`~Table.update`), which refuse with a clear error unless the object accepts them.
The adapter holds the error boundary and the transaction hooks; a table only raises
:class:`~cognito_fdw.errors.CognitoFdwError` and knows nothing of Multicorn.

A table is made once per wrapper instance (docs/multicorn.md M3: one instance per backend and
table), at its first hook, from its parsed options, the pool that reaches Cognito for them
and Multicorn's column definitions; making it validates the columns.

:func:`table_class` finds the class of an object of :data:`cognito_fdw.objects.OBJECTS`,
the one list of objects.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from ..columns import Column, Field, ImportedColumn, resolve_fields
from ..errors import CognitoFdwError
from ..objects import OBJECTS
from ..pg import catalog

if TYPE_CHECKING:
    from ..aws.client import Pool, Stats
    from ..options import Options

# Planner width of one column of a table whose cost is not counted in requests.
COLUMN_WIDTH = 24


def actual_lines(spent: Stats, scans: int) -> list[str]:
    """EXPLAIN ANALYZE's lines: what the ``scans`` scans of one table in one statement (each
    rescan of a join's inner side counted) sent to Cognito, retried and waited for, summed in
    ``spent``."""
    requests, retries = spent.requests, spent.retries
    by_operation = ", ".join(f"{name} {n}" for name, n in sorted(spent.operations.items()))
    hits, misses = spent.cache_hits, spent.cache_misses
    cached = (
        [
            f"Cognito actual: {hits} answer{'s' if hits != 1 else ''} from the cache"
            + (f", the oldest {spent.cache_age:.1f} s old" if spent.cache_age is not None else "")
            + f"; {misses} not in it"
        ]
        if hits or misses
        else []
    )
    return [
        f"Cognito actual: {requests} request{'s' if requests != 1 else ''}"
        f"{f' ({by_operation})' if by_operation else ''} in {scans} "
        f"scan{'s' if scans != 1 else ''} of this table",
        f"Cognito actual: {retries} retr{'ies' if retries != 1 else 'y'}, "
        f"{spent.throttled} throttled, {spent.cognito_seconds * 1000:.0f} ms in Cognito "
        f"requests, {spent.cap_seconds * 1000:.0f} ms waiting for the request-rate cap",
    ] + cached


def table_class(name: str) -> type[Table]:
    """The class of option ``object`` value ``name`` (one of :data:`OBJECTS`)."""
    module, _, cls = OBJECTS[name].partition(":")  # a module of this package
    return getattr(importlib.import_module(f".{module}", __package__), cls)


class Table(abc.ABC):
    """One foreign table of one object.

    ``quals`` are Multicorn's ``Qual`` objects (``field_name``, ``operator``, ``value``);
    ``columns`` the names the query reads (empty for ``count(*)`` and a whole-row reference:
    docs/multicorn.md M1: every key of a row is converted); ``stats``
    (:class:`~cognito_fdw.aws.client.Stats`) counts a scan's requests and rows for the DEBUG line.
    """

    #: The option ``object`` value, a key of :data:`OBJECTS`.
    object: ClassVar[str]
    #: An object whose rows are API records: its columns, name -> Field (its registry).
    fields: ClassVar[Mapping[str, Field]] = {}
    #: Whether IMPORT FOREIGN SCHEMA's option ``writable`` is set on its table.
    importable_writable: ClassVar[bool] = False
    #: Whether IMPORT FOREIGN SCHEMA creates a table of it (not the server's own state's).
    imported: ClassVar[bool] = True
    #: The error refusing a write: its message (by default naming the object) and HINT.
    read_only_message: ClassVar[str | None] = None
    read_only_hint: ClassVar[str] = ""

    def __init__(
        self,
        options: Options,
        pool: Pool,
        fdw_columns: Mapping,
        progress: Callable | None = None,
    ):
        #: The table's parsed options (its server's, user mapping's and its own).
        self.options = options
        #: What reaches Cognito, for these options.
        self.pool = pool
        self.fdw_columns = fdw_columns
        #: Multicorn's ``log_to_postgres``, for a long scan's progress NOTICE (None: none).
        self.progress = progress

    def collations(self) -> tuple[str, ...]:
        """The nondeterministic collations a comparison on the table may use: those of the
        database (docs/multicorn.md H10: quals carry no collation), or none when the table
        asserts so (option ``deterministic_collations``)."""
        if self.options.deterministic_collations:
            return ()
        return catalog.nondeterministic_collations()

    def record_columns(self) -> list[Column]:
        """The declared columns, resolved against :attr:`fields` (ColumnError otherwise)."""
        return resolve_fields(self.fdw_columns, self.fields, self.object)

    # -- planning ----------------------------------------------------------------------

    @abc.abstractmethod
    def rel_size(self, quals: Sequence, columns: Sequence[str]) -> tuple[int, int, int]:
        """``get_rel_size``: (rows, width, startup cost); Multicorn takes rows x width as the path's
        total cost (docs/multicorn.md M5: total cost is rows x width), so the startup cost stays
        below it."""

    def path_keys(self) -> list[tuple[tuple[str, ...], int]]:
        """``get_path_keys``: the columns a join may look rows up by, with rows per key."""
        return []

    def can_limit(self, limit: int | None, offset: int | None) -> bool:
        """Whether :meth:`rows` applies LIMIT and OFFSET itself (docs/multicorn.md H6: an accepted
        LIMIT is trusted)."""
        return False

    @abc.abstractmethod
    def explain(
        self,
        quals: Sequence,
        columns: Sequence[str],
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[str]:
        """EXPLAIN's lines: the requests a scan with these quals sends, the condition pushed
        down to Cognito and each one left to PostgreSQL, with why (the adapter adds the
        lines every table shares)."""

    def where(self) -> str:
        """EXPLAIN VERBOSE's line naming the region and the pool."""
        options = self.options
        return f"Cognito: region {options.region}, user pool {options.user_pool_id}"

    # -- scanning ----------------------------------------------------------------------

    @abc.abstractmethod
    def rows(
        self,
        quals: Sequence,
        columns: Sequence[str],
        stats: Stats,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Iterator[dict]:
        """The rows, as dicts by column name; PostgreSQL re-checks every qual on them.
        The adapter closes the iterator when the scan ends early."""

    def end_scan(self) -> None:  # noqa: B027 - most tables keep nothing between scans
        """The statement's scans of this table are over."""

    # -- writing: refused unless the object accepts it ----------------------------------

    def read_only(self) -> CognitoFdwError:
        message = self.read_only_message or f"cognito_fdw object {self.object!r} is read-only"
        return CognitoFdwError(message, hint=self.read_only_hint)

    def rowid_column(self) -> str:
        """The column identifying a row for DELETE and UPDATE (Multicorn asks when planning any
        write, docs/multicorn.md M4: hook order and savepoints, so a refusal here is the clear error
        INSERT, UPDATE and DELETE get)."""
        raise self.read_only()

    def insert(self, values: Mapping) -> dict:
        raise self.read_only()

    def delete(self, rowid) -> None:
        raise self.read_only()

    def update(self, rowid, values: Mapping) -> dict:
        raise self.read_only()

    # -- IMPORT FOREIGN SCHEMA -----------------------------------------------------------

    @classmethod
    def imported_columns(cls, custom: Mapping[str, str]) -> list[ImportedColumn]:
        """The columns IMPORT FOREIGN SCHEMA declares for a pool with these custom
        attributes (``custom:x`` -> data type): by default one per :attr:`fields` entry,
        typed as the registry says."""
        return [ImportedColumn(name, spec.imported_type) for name, spec in cls.fields.items()]
