"""The Multicorn adapter: the only module that imports ``multicorn``.

Each hook becomes one call on the table the ``object`` option names
(:mod:`cognito_fdw.tables.table`); the adapter adds only what is Multicorn's business: the
error boundary, the scan's
lifetime and its DEBUG line, and the transaction hooks, which drive the one owner of the
backend's pending changes (:data:`cognito_fdw.changes.transaction`).

Every entry point runs behind :func:`_guarded`, which turns any failure into one
PostgreSQL ERROR with a HINT and no credential in it.  Multicorn's own ERROR is raised
as ``MulticornException``, so that one is let through untouched.
"""

from __future__ import annotations

import contextlib
import functools
import weakref

from multicorn import ForeignDataWrapper
from multicorn.utils import DEBUG, ERROR, WARNING, MulticornException, log_to_postgres

from . import budget, changes
from .aws import credentials
from .aws.client import Pool, Stats, flush_counts, runtime
from .errors import CognitoFdwError, one_line
from .options import UNSHOWN_OPTIONS, parse_options
from .pg import backend, catalog, dateguard
from .scrubbing import scrub
from .tables import importer
from .tables.table import Table, actual_lines, table_class

# Before Multicorn converts any condition of these tables (docs/multicorn.md H11: an unholdable date
# constant crashes).
dateguard.guard_date_conversions()


def _raise_error(error: CognitoFdwError) -> None:
    detail = error.detail
    if error.superuser_detail is not None and backend.current_role_is_superuser():
        detail = error.superuser_detail
    # Every text on one line: parts of it may come from Cognito (errors.one_line).
    log_to_postgres(
        one_line(error.message), ERROR, hint=one_line(error.hint), detail=one_line(detail)
    )


def _translated(exc: Exception, options, what: str, table=lambda: None) -> CognitoFdwError:
    """``exc`` as the error the user sees: naming the foreign table (``table()``, asked only
    when a text stands for it), then every value of ``options`` that no message may show
    scrubbed (from the raw options, so even an option error that stopped parsing is)."""
    if not isinstance(exc, CognitoFdwError):
        exc = CognitoFdwError(
            f"cognito_fdw internal error: {type(exc).__name__}: {scrub(str(exc))}",
            hint=f"This is a bug in cognito_fdw: please report it with the {what}.",
        )
    exc.naming(table() if exc.names_table() else None)
    return exc.scrubbed(options.get(name) for name in UNSHOWN_OPTIONS)


def _guarded(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except MulticornException:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing escapes untranslated
            self._fail(exc)

    return wrapper


# Multicorn gives each item explain() returns a property "Multicorn" of its own: JSON and YAML
# output then repeat the key in one object and every parser keeps only the last one
# (docs/multicorn.md M14: EXPLAIN items are separate properties).  One item holds every line; in
# TEXT output each line after the first is indented to stand under the first one of a scan at the
# top of the plan.
CONTINUATION = "\n" + " " * len("  Multicorn: ")


def explain_item(lines: list[str]) -> str:
    """EXPLAIN's lines as the one item that keeps them all, in every format."""
    return CONTINUATION.join(lines)


class Spent:
    """What one statement's scans of a table sent, for EXPLAIN ANALYZE, in memory bounded
    whatever the number of scans: a join's inner side calls execute() once per outer row,
    and a statement may rescan it millions of times.  A scan's Stats lives while the scan
    runs, then is added to ``done``."""

    def __init__(self, statement):
        self.statement = statement
        self.scans = 0
        self.done = Stats()
        self.running: dict[int, Stats] = {}

    def began(self) -> Stats:
        stats = Stats()
        self.running[id(stats)] = stats
        return stats

    def ended(self, stats: Stats) -> None:
        if self.running.pop(id(stats), None) is not None:
            self.done.add(stats)

    def totals(self) -> Stats:
        total = Stats()
        for stats in (self.done, *self.running.values()):
            total.add(stats)
        return total


class CognitoFdw(ForeignDataWrapper):
    """Amazon Cognito user pools as foreign tables; see the package docstring for SQL."""

    # Multicorn reads this right after get_rel_size and gives it to every path of the table
    # (docs/multicorn.md M5: total cost is rows x width); get_rel_size sets it from the table's
    # answer.
    _startup_cost = 0

    def __init__(self, fdw_options, fdw_columns):
        super().__init__(fdw_options, fdw_columns)
        catalog.remember_table(self)  # now or never: Multicorn has the table open
        self._raw_options = dict(fdw_options)
        self._fdw_columns = fdw_columns
        self._instance = None
        # The scans Multicorn may still pull from -> (transaction level, statement) each
        # began in.  Weak: Multicorn drops a scan's iterator at a rescan and at the end of
        # the scan, which closes it, and several scans of one table can be open at once
        # (a self-join, a cursor).  It never drops those of a failed statement, nor one
        # whose iterator EXPLAIN ANALYZE replaced: those are closed here (docs/multicorn.md
        # M12: EXPLAIN ANALYZE leaks a scan's iterator).
        self._open: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # The transaction level, as Multicorn's hooks say (docs/multicorn.md M4: hook order and
        # savepoints).
        self._level = 0
        # For EXPLAIN ANALYZE: what the running statement's scans of this table sent.
        self._spent = Spent(None)

    @classmethod
    def import_schema(cls, schema, srv_options, options, restriction_type, restricts):
        # Imported here: only IMPORT FOREIGN SCHEMA needs them (and the unit tests' double
        # of multicorn has none).
        from multicorn import ColumnDefinition, TableDefinition

        try:
            pool = Pool(parse_options(dict(srv_options, object="users")))
            wanted = importer.table_definitions(pool.custom_attributes(), options)
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing escapes untranslated
            _raise_error(_translated(exc, srv_options, "statement"))
        return [
            TableDefinition(
                table.name,
                columns=[
                    ColumnDefinition(c.name, type_name=c.type_name, options=c.options)
                    for c in table.columns
                ],
                options=table.options,
            )
            for table in wanted
        ]

    # -- plumbing --------------------------------------------------------------------

    def _table(self) -> Table:
        """The table the ``object`` option names, made at the first hook (options parsed,
        columns validated) and kept for the instance's life."""
        if self._instance is None:
            options = parse_options(self._raw_options)
            # The table's OID says which server a vault secret is asked for (secrets.py).
            pool = Pool(options, table=catalog.foreign_table_oid(self))
            self._instance = table_class(options.object)(
                options, pool, self._fdw_columns, progress=log_to_postgres
            )
        return self._instance

    def _fail(self, exc: Exception) -> None:
        _raise_error(_translated(exc, self._raw_options, "query", self._name))

    def _name(self) -> str | None:
        """This table's quoted, qualified name, for errors that name it (None if unknown)."""
        return catalog.foreign_table_name(self)

    def _report(self, stats: Stats) -> None:
        flush_counts()  # into the counters every backend shares (the request_stats view)
        backend.report(log_to_postgres, f"cognito_fdw: {stats.summary()}", DEBUG)

    # -- planning --------------------------------------------------------------------

    @_guarded
    def get_rel_size(self, quals, columns):
        rows, width, self._startup_cost = self._table().rel_size(quals, columns)
        return rows, width

    @_guarded
    def get_path_keys(self):
        return self._table().path_keys()

    @_guarded
    def can_limit(self, limit, offset):
        return self._table().can_limit(limit, offset)

    @_guarded
    def explain(self, quals, columns, sortkeys=None, verbose=False, limit=None, offset=None):
        table = self._table()
        options = table.options
        lines = table.explain(quals, columns, limit=limit, offset=offset)
        lines.append(
            f"Cognito: at most {options.max_requests_per_second:g} requests/s, "
            "shared by every connection to this account; at most "
            f"{options.max_requests_per_statement:,} per statement (max_requests_per_statement)"
        )
        if verbose:
            lines.append(table.where())
            lines.append(f"Cognito: credentials from {credentials.resolve(options).describe()}")
            lines.append(f"Runtime: {runtime()}")
        # Multicorn calls explain() after the scans under EXPLAIN ANALYZE, and under plain EXPLAIN,
        # whose statement begins none, only (docs/multicorn.md M12: EXPLAIN ANALYZE leaks a scan's
        # iterator): this statement's scans are over then, and what they cost is what it actually
        # sent.
        statement = backend.statement_started()
        if statement == self._spent.statement and self._spent.scans:
            self._close_scans(lambda level, began_in: began_in == statement)
            lines.extend(actual_lines(self._spent.totals(), self._spent.scans))
        return [explain_item(lines)]

    # -- scanning --------------------------------------------------------------------

    def execute(self, quals, columns, sortkeys=None, limit=None, offset=None):
        statement = backend.statement_started()
        if statement != self._spent.statement:
            self._spent = Spent(statement)
        self._spent.scans += 1
        # A procedure's transactions (sql/sync.sql's parts, each COMMITted) each have a
        # budget: they are one statement, but each is a scan the caller chose to commit.
        budget.statement.claim((statement, backend.transaction_started()))
        scan = self._rows(quals, columns, limit, offset, self._spent)
        self._open[scan] = (self._level, statement)
        return scan

    def _rows(self, quals, columns, limit, offset, spent: Spent):
        stats = spent.began()
        try:
            table = self._table()
            budget.check_scans(spent.scans, table.options.max_scans_per_statement, self._name())
            rows = table.rows(quals, columns, stats, limit=limit, offset=offset)
            try:
                yield from rows
            finally:
                rows.close()  # stops a concurrent scan's workers now, and counts their work
            self._report(stats)
        except GeneratorExit:
            self._report(stats)  # the scan ended early (a Limit above it, end of a join)
            raise
        except MulticornException:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary for errors while paging
            self._fail(exc)
        finally:
            spent.ended(stats)

    def _close_scans(self, which) -> None:
        """Close the open scans for which ``which(level, statement)`` is true, which stops
        their workers and counts their work; never raises (rollback calls it)."""
        for scan, (level, statement) in list(self._open.items()):
            if which(level, statement):
                # An abandoned scan's error helps nobody, and rollback() must not raise.
                with contextlib.suppress(Exception):
                    scan.close()

    def end_scan(self):
        # A later plain EXPLAIN in the same statement (in a function) shows no costs.
        self._spent = Spent(None)
        if self._instance is not None:
            self._instance.end_scan()

    # -- writing ---------------------------------------------------------------------

    @property
    @_guarded
    def rowid_column(self):
        # Multicorn asks for it when planning INSERT/UPDATE/DELETE; a refusal here is a
        # clear error instead of its default "Error in python: NotImplementedError"
        # (docs/multicorn.md M4: hook order and savepoints).
        return self._table().rowid_column()

    @_guarded
    def insert(self, values):
        return self._table().insert(values)

    @_guarded
    def delete(self, oldvalues):
        self._table().delete(oldvalues)

    @_guarded
    def update(self, oldvalues, newvalues):
        return self._table().update(oldvalues, newvalues)

    # -- the transaction: one owner of every table's pending changes (changes.py) --------

    def begin(self, serializable):
        self._level = 1

    def sub_begin(self, level):
        self._level = level
        changes.transaction.sub_begin(level)

    def sub_commit(self, level):
        self._level = level - 1
        changes.transaction.sub_commit(level)

    def sub_rollback(self, level):
        # The failed statement's scans, which Multicorn never ends (a cursor opened before
        # the savepoint lives on).
        self._close_scans(lambda began, statement: began >= level)
        self._spent = Spent(None)  # a plain EXPLAIN later in the statement shows no costs
        self._level = level - 1
        changes.transaction.sub_rollback(level)

    @_guarded
    def pre_commit(self):
        # Changes are sent here, never in commit(): an error in commit() PANICs the server
        # (docs/multicorn.md H4: an error in commit PANICs the server); an error here aborts the
        # transaction cleanly.
        if not changes.transaction:
            return
        budget.statement.suspend()  # the transaction's writes are not a statement's reads
        stats = Stats()
        changes.transaction.send(stats, undoing=backend.cancels_ignored)
        self._report(stats)

    def rollback(self):
        # PostgreSQL's abort path: nothing may raise here.  A rollback after pre_commit sent
        # changes (SERIALIZABLE's commit-time check failed, a cancel or another hook's error
        # during COMMIT) undoes them, and says which it could not.
        self._close_scans(lambda level, statement: True)
        self._spent = Spent(None)
        self._level = 0
        changes.transaction.undo_sent(
            lambda message: backend.report(log_to_postgres, message, WARNING),
            undoing=backend.cancels_ignored,
        )

    def commit(self):
        self._level = 0
        # Cannot raise (docs/multicorn.md H4: an error in commit PANICs the server).
        changes.transaction.clear()
