"""The table protocol: what one foreign table answers, whatever object it reads.

``fdw.py`` turns each Multicorn hook into one call on a :class:`Table`: planning
(:meth:`~Table.rel_size`, :meth:`~Table.path_keys`, :meth:`~Table.can_limit`), EXPLAIN
(:meth:`~Table.explain`), the scan (:meth:`~Table.rows`, :meth:`~Table.end_scan`) and
writes (:meth:`~Table.rowid_column`, :meth:`~Table.insert`, :meth:`~Table.delete`,
:meth:`~Table.update`), which refuse with a clear error unless the object accepts them.
The adapter holds the error boundary and the transaction hooks; a table only raises
:class:`~cognito_fdw.errors.CognitoFdwError` and knows nothing of Multicorn.

A table is made once per wrapper instance (docs/multicorn.md M3), at its first hook, from
the pool (which holds the parsed options) and Multicorn's column definitions; making it
validates the columns.

:data:`OBJECTS` is the one list of objects: the option ``object`` takes its choices from
it (and with them ``sql/guard.sql``), IMPORT FOREIGN SCHEMA creates one table of each.  A
new object is one module with a :class:`Table` subclass and one entry here (plus its
columns in the column registry).
"""

from __future__ import annotations

import abc
import collections
import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from .columns import Column, Field, ImportedColumn, resolve_fields
from .errors import CognitoFdwError

if TYPE_CHECKING:
    from .client import Pool, Stats

# Option ``object`` value -> the class reading it, as "module:Class" of this package.  The
# modules are imported when a table of theirs is first used, so options.py (which takes
# the names from here) stays free of boto3.
OBJECTS = {
    "users": "users:Users",
    "groups": "groups:Groups",
    "group_members": "members:Members",
    "user_pool": "user_pool:UserPool",
    "request_stats": "monitor:RequestStats",
    "rate_budget": "monitor:RateBudget",
    "cache": "monitor:CacheEntries",
}

# Planner width of one column of a table whose cost is not counted in requests.
COLUMN_WIDTH = 24


def actual_lines(scans: Sequence[Stats]) -> list[str]:
    """EXPLAIN ANALYZE's lines: what ``scans`` (those of one table in one statement, each
    rescan of a join's inner side counted) sent to Cognito, retried and waited for."""
    operations = collections.Counter()
    for stats in scans:
        operations.update(stats.operations)
    requests, retries = sum(s.requests for s in scans), sum(s.retries for s in scans)
    cognito_ms = sum(s.cognito_seconds for s in scans) * 1000
    cap_ms = sum(s.cap_seconds for s in scans) * 1000
    by_operation = ", ".join(f"{name} {count}" for name, count in sorted(operations.items()))
    hits, misses = sum(s.cache_hits for s in scans), sum(s.cache_misses for s in scans)
    ages = [s.cache_age for s in scans if s.cache_age is not None]
    cached = (
        [
            f"Cognito actual: {hits} answer{'s' if hits != 1 else ''} from the cache"
            + (f", the oldest {max(ages):.1f} s old" if ages else "")
            + f"; {misses} not in it"
        ]
        if hits or misses
        else []
    )
    return [
        f"Cognito actual: {requests} request{'s' if requests != 1 else ''}"
        f"{f' ({by_operation})' if by_operation else ''} in {len(scans)} "
        f"scan{'s' if len(scans) != 1 else ''} of this table",
        f"Cognito actual: {retries} retr{'ies' if retries != 1 else 'y'}, "
        f"{sum(s.throttled for s in scans)} throttled, {cognito_ms:.0f} ms in Cognito "
        f"requests, {cap_ms:.0f} ms waiting for the request-rate cap",
    ] + cached


def table_class(name: str) -> type[Table]:
    """The class of option ``object`` value ``name`` (one of :data:`OBJECTS`)."""
    module, _, cls = OBJECTS[name].partition(":")
    return getattr(importlib.import_module(f".{module}", __package__), cls)


class Table(abc.ABC):
    """One foreign table of one object.

    ``quals`` are Multicorn's ``Qual`` objects (``field_name``, ``operator``, ``value``);
    ``columns`` the names the query reads (empty for ``count(*)`` and a whole-row
    reference: docs/multicorn.md M1); ``stats`` (:class:`~cognito_fdw.client.Stats`)
    counts a scan's requests and rows for the DEBUG line.
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

    def __init__(self, pool: Pool, fdw_columns: Mapping):
        self.pool = pool
        self.fdw_columns = fdw_columns

    def record_columns(self) -> list[Column]:
        """The declared columns, resolved against :attr:`fields` (ColumnError otherwise)."""
        return resolve_fields(self.fdw_columns, self.fields, self.object)

    # -- planning ----------------------------------------------------------------------

    @abc.abstractmethod
    def rel_size(self, quals: Sequence, columns: Sequence[str]) -> tuple[int, int, int]:
        """``get_rel_size``: (rows, width, startup cost); Multicorn takes rows x width as the
        path's total cost (docs/multicorn.md M5), so the startup cost stays below it."""

    def path_keys(self) -> list[tuple[tuple[str, ...], int]]:
        """``get_path_keys``: the columns a join may look rows up by, with rows per key."""
        return []

    def can_limit(self, limit: int | None, offset: int | None) -> bool:
        """Whether :meth:`rows` applies LIMIT and OFFSET itself (docs/multicorn.md H6)."""
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
        options = self.pool.options
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
        """The column identifying a row for DELETE and UPDATE (Multicorn asks when planning
        any write, docs/multicorn.md M4, so a refusal here is the clear error INSERT, UPDATE
        and DELETE get)."""
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
