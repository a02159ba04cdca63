"""The Multicorn adapter: the only module that imports ``multicorn``.

Every entry point runs behind :func:`_guarded`, which turns any failure into one
PostgreSQL ERROR with a HINT and no credential in it.  Multicorn's own ERROR is raised
as ``MulticornException``, so that one is let through untouched.
"""

from __future__ import annotations

import functools
import itertools
import weakref

from multicorn import ForeignDataWrapper
from multicorn.utils import DEBUG, ERROR, MulticornException, log_to_postgres

from . import backend, credentials, dateguard, groups, importer, pushdown
from .changes import ChangeLog
from .client import Pool, Stats
from .columns import resolve_columns
from .errors import CognitoFdwError, scrub
from .groups import Groups, Members
from .options import SECRET_OPTIONS, parse_options
from .rows import database_encoding, read_columns, user_row
from .scan import LookupCache, run

# Before Multicorn converts any condition of these tables (docs/multicorn.md H11).
dateguard.guard_date_conversions()


def _raise_error(error: CognitoFdwError) -> None:
    log_to_postgres(error.message, ERROR, hint=error.hint, detail=error.detail)


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


class CognitoFdw(ForeignDataWrapper):
    """Amazon Cognito user pools as foreign tables; see the package docstring for SQL."""

    # Multicorn reads this right after get_rel_size and gives it to every path of the
    # table.  CognitoFdw.get_rel_size sets it per plan; 0 is for groups tables, whose
    # count(*) has width 0 and so a total of 0 (Multicorn's default of 20 exceeded it).
    _startup_cost = 0

    def __new__(cls, fdw_options=None, fdw_columns=None):
        # One server class for every object: groups and group_members get their own
        # subclass; a bad object option is reported by parse_options at the first query.
        kind = {"groups": GroupsFdw, "group_members": GroupsFdw}.get(
            (fdw_options or {}).get("object"), cls
        )
        return super().__new__(kind if issubclass(kind, cls) else cls)

    def __init__(self, fdw_options, fdw_columns):
        super().__init__(fdw_options, fdw_columns)
        self._raw_options = dict(fdw_options)
        self._fdw_columns = fdw_columns
        self._state = None
        # Live scans -> their transaction.  One instance serves every scan of its table, and
        # several run at once (a self-join, two cursors): each ends when Multicorn drops it.
        self._scans = weakref.WeakKeyDictionary()
        self._targets = None
        self._cache = LookupCache()

    @classmethod
    def import_schema(cls, schema, srv_options, options, restriction_type, restricts):
        # Imported here: only IMPORT FOREIGN SCHEMA needs them (and the unit tests' double
        # of multicorn has none).
        from multicorn import ColumnDefinition, TableDefinition

        try:
            pool = Pool(parse_options(dict(srv_options, object="users")))
            wanted = importer.table_definitions(pool.custom_attributes(), options)
        except CognitoFdwError as exc:
            _raise_error(exc.scrubbed(srv_options.get(name) for name in SECRET_OPTIONS))
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing escapes untranslated
            _raise_error(
                CognitoFdwError(
                    f"cognito_fdw internal error: {type(exc).__name__}",
                    hint="This is a bug in cognito_fdw: please report it with the statement.",
                )
            )
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

    # -- shared plumbing -------------------------------------------------------------

    def _secrets(self):
        # From the raw options, so even an option error that stopped parsing is scrubbed.
        return [self._raw_options.get(name) for name in (*SECRET_OPTIONS, "aws_access_key_id")]

    def _fail(self, exc: Exception) -> None:
        if not isinstance(exc, CognitoFdwError):
            exc = CognitoFdwError(
                f"cognito_fdw internal error: {type(exc).__name__}: {scrub(str(exc))}",
                hint="This is a bug in cognito_fdw: please report it with the query.",
            )
        _raise_error(exc.scrubbed(self._secrets()))

    def _prepared(self):
        """Options, pool and columns, validated once per instance (at the first query)."""
        if self._state is None:
            options = parse_options(self._raw_options)
            pool = Pool(options)
            columns = resolve_columns(self._fdw_columns, pool.custom_attributes)
            self._state = (options, pool, columns)
        return self._state

    def _searchable(self) -> dict[str, pushdown.Target]:
        if self._targets is None:
            self._targets = pushdown.targets(self._fdw_columns, self._prepared()[2])
        return self._targets

    def _plan(self, quals, limit=None, offset=None) -> pushdown.Plan:
        """The one request plan that planning, EXPLAIN and execution all use."""
        options, pool, _ = self._prepared()
        return pushdown.plan_scan(
            quals,
            self._searchable(),
            estimated_users=pool.estimated_users,
            pushdown=options.pushdown,
            limit=limit,
            offset=offset,
            workers=options.scan_workers,
            username_lookup=options.username_lookup,
            collations=_collations(options),
            null_tests=pushdown.PLANNED_NULL_TESTS,
        )

    # -- planning --------------------------------------------------------------------

    @_guarded
    def get_rel_size(self, quals, columns):
        pushdown.PLANNED_NULL_TESTS.note(quals)  # first: what tells IS NULL from a NULL key
        # The cost is the requests, not the bytes: see pushdown.planner_size.
        rows, width = pushdown.planner_size(self._plan(quals))
        # Startup above zero makes PostgreSQL's Limit node over a full scan cost more than
        # the pushed LIMIT (at zero they tie and PostgreSQL keeps its own, which reads a page
        # ahead it does not need); no more than one row's width, no path's total.
        self._startup_cost = width
        return rows, width

    @_guarded
    def get_path_keys(self):
        options, _, _ = self._prepared()
        if not options.pushdown:
            return []
        return pushdown.path_keys(self._searchable(), _collations(options)())

    @_guarded
    def can_limit(self, limit, offset):
        # Accepted, PostgreSQL drops its Limit node and execute() applies both.  With
        # pushdown off PostgreSQL keeps it (the scan still stops when it stops pulling).
        options, _, _ = self._prepared()
        return options.pushdown

    @_guarded
    def explain(self, quals, columns, sortkeys=None, verbose=False, limit=None, offset=None):
        options, _, _ = self._prepared()
        lines = self._plan(quals, limit, offset).explain()
        lines.append(
            f"Cognito: at most {options.max_requests_per_second:g} requests/s, "
            "shared by every connection to this account"
        )
        if verbose:
            lines.append(f"Cognito: region {options.region}, user pool {options.user_pool_id}")
            lines.append(f"Cognito: credentials from {credentials.resolve(options).describe()}")
        return lines

    # -- writing ---------------------------------------------------------------------

    @property
    def rowid_column(self):
        # Multicorn asks for it when planning INSERT/UPDATE/DELETE; answering with a clear
        # error beats its default "Error in python: NotImplementedError".
        self._fail(
            CognitoFdwError(
                "cognito_fdw tables of users are read-only",
                hint="Change users in Cognito itself (console, AWS CLI or SDK); the table "
                "shows the change at the next query.",
            )
        )

    # -- scanning --------------------------------------------------------------------

    def execute(self, quals, columns, sortkeys=None, limit=None, offset=None):
        return self._started(self._rows(quals, columns, limit, offset))

    def _rows(self, quals, columns, limit, offset):
        try:
            _, pool, cols = self._prepared()
            # Only what the query reads is converted: a value of an unread column that the
            # database encoding cannot hold must not fail the query.
            cols = read_columns(cols, columns)
            encoding = database_encoding(backend.database_encoding())
            plan = self._plan(quals, limit, offset)
            self._cache.claim(backend.statement_started())
            stats = Stats()
            users = run(plan, pool, stats, self._cache)
            try:
                for user in itertools.islice(users, offset or 0, _wanted(limit, offset)):
                    yield user_row(user, cols, encoding)
            finally:
                users.close()  # stops a concurrent scan's workers now, and counts their work
            self._report(stats)
        except GeneratorExit:
            self._report(stats)  # the scan ended early (a Limit above it, end of a join)
            raise
        except MulticornException:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary for errors while paging
            self._fail(exc)

    def _report(self, stats: Stats) -> None:
        backend.report(log_to_postgres, f"cognito_fdw: {stats.summary()}", DEBUG)

    def _started(self, scan):
        """Track a new scan.  Multicorn drops a scan at a rescan and at its end (closing it
        stops a concurrent scan's workers); a statement that fails drops nothing, so scans
        of an earlier transaction, which no cursor can still read, are closed here."""
        current = backend.transaction_started()
        for old, started in list(self._scans.items()):
            if started != current:
                old.close()
        self._scans[scan] = current
        return scan

    def end_scan(self):
        self._cache.clear()


def _collations(options):
    """What gives the nondeterministic collations a comparison on the table may use."""
    return (lambda: ()) if options.deterministic_collations else backend.nondeterministic_collations


def _wanted(limit, offset) -> int | None:
    """How many users a pushed LIMIT/OFFSET needs from Cognito (None: all of them)."""
    if limit is None:
        return None
    return (offset or 0) + limit


class GroupsFdw(CognitoFdw):
    """``object 'groups'`` and ``object 'group_members'``; logic in groups.py, changes.py."""

    def __init__(self, fdw_options, fdw_columns):
        super().__init__(fdw_options, fdw_columns)
        self._table = None
        self._changes = ChangeLog()

    def _prepared_table(self):
        if self._table is None:
            options = parse_options(self._raw_options)
            pool = Pool(options)
            if options.object == "groups":
                self._table = Groups(pool, self._fdw_columns)
            else:
                self._table = Members(pool, self._fdw_columns, options.writable, self._changes)
        return self._table

    def _members(self) -> Members:
        table = self._prepared_table()
        if not isinstance(table, Members):
            raise CognitoFdwError(
                "cognito_fdw object 'groups' is read-only",
                hint="Group memberships can be written: INSERT and DELETE on a foreign table "
                "with OPTIONS (object 'group_members', writable 'true').",
            )
        return table

    @_guarded
    def get_rel_size(self, quals, columns):
        width = len(columns) * 24
        return (self._prepared_table().rel_size(quals), width)

    def can_limit(self, limit, offset):
        return False

    @_guarded
    def get_path_keys(self):
        table = self._prepared_table()
        return table.path_keys() if isinstance(table, Members) else []

    @_guarded
    def explain(self, quals, columns, sortkeys=None, verbose=False, limit=None, offset=None):
        table = self._prepared_table()
        lines = (
            table.explain(quals, columns) if isinstance(table, Members) else table.explain(quals)
        )
        if verbose:
            options = table.pool.options
            lines.append(f"Cognito: region {options.region}, user pool {options.user_pool_id}")
        return lines

    def execute(self, quals, columns, sortkeys=None, limit=None, offset=None):
        return self._started(self._table_rows(quals, columns))

    def _table_rows(self, quals, columns):
        try:
            table = self._prepared_table()
            stats = Stats()
            if isinstance(table, Members):
                yield from table.rows(quals, columns, stats)
            else:
                yield from table.rows(quals, stats)
            self._report(stats)
        except MulticornException:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary for errors while paging
            self._fail(exc)

    # -- writing: recorded per transaction, sent at COMMIT -----------------------------

    @property
    @_guarded
    def rowid_column(self):
        return self._members().check_writable()

    @_guarded
    def insert(self, values):
        return self._members().insert(values)

    @_guarded
    def delete(self, oldvalues):
        # Multicorn passes the rowid value only (docs/multicorn.md M4).
        self._members().delete(oldvalues)

    @_guarded
    def update(self, oldvalues, newvalues):
        self._members().refuse_update()

    def begin(self, serializable):
        self._changes.clear()

    def sub_begin(self, level):
        self._changes.sub_begin(level)

    def sub_commit(self, level):
        self._changes.sub_commit(level)
        groups.release_savepoint(level)

    def sub_rollback(self, level):
        self._changes.sub_rollback(level)
        groups.rollback_savepoint(level)

    @_guarded
    def pre_commit(self):
        # Changes are sent here, never in commit(): an error in commit() PANICs the server
        # (docs/multicorn.md H4); an error here aborts the transaction cleanly.
        if not groups.has_pending():
            return
        stats = Stats()
        try:
            groups.commit_pending(stats)
        finally:
            groups.clear_pending()
        self._report(stats)

    def rollback(self):
        self._changes.clear()
        groups.clear_pending()

    def commit(self):
        self._changes.clear()
        groups.clear_pending()
