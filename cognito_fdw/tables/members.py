"""``object 'group_members'``: one row per membership, writable at COMMIT.

A row is ``group_name``, ``username``, a ``membership`` key, and any column of the users
table (``sub``, ``email``, ...).  How a scan reaches Cognito (PostgreSQL re-checks every
qual):

* ``membership = k`` or ``username = u``: one AdminListGroupsForUser for the user, plus,
  when a user column other than username is read and the user is in a group, the user's
  record as the users table looks a username up (server option ``username_lookup``: a
  ListUsers filter by default, which is not billed; AdminGetUser, which counts the user as
  a monthly active user, only when the server asks for it);
* ``group_name = g``: one ListUsersInGroup of that group (users come with their attributes);
* ``IN (...)`` lists of either: one of the above per value;
* a qual no row can satisfy (a comparison with NULL, ``= ANY`` of an empty array, only
  names Cognito could not hold; :func:`nulls.cannot_match`): no request at all;
* otherwise: ListGroups, then ListUsersInGroup for every group.

With ``writable 'true'``, INSERT and DELETE record changes in the table's
:class:`~cognito_fdw.changes.ChangeLog`, which joins the backend's
:data:`changes.transaction`; they are sent at COMMIT, from the wrapper's ``pre_commit``.
Scans in the transaction see those changes (rows added in it show NULL for the user
columns until COMMIT).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .. import budget, changes, plans, pushdown
from ..api import PAGE_SIZE, is_cognito_name
from ..aws.client import Pool, Stats
from ..aws.scan import LookupCache, run
from ..changes import Change, ChangeLog, Transaction, membership_key, parse_membership
from ..columns import IMPORT_TYPES, ImportedColumn, resolve_columns, unreadable_columns
from ..errors import THIS_TABLE, CognitoApiError, CognitoFdwError
from ..pg import backend
from ..quals import equal_values, impossible, once, pushable, refusals
from ..rows import user_row
from ..values import EXACT_TEXT_TYPES, STRING, type_family
from .table import COLUMN_WIDTH, Table
from .users import Users

# group_members' own columns; every other column is read as in the users table.
MEMBER_COLUMNS = {
    "group_name": "the group's name",
    "username": "the member's user name",
    "membership": "the row id for DELETE: the JSON array [group_name, username]",
}
ROWID = "membership"
_CHEAP = set(MEMBER_COLUMNS)
# Every row has a group and a user name (a membership key too); a user column may be NULL.
_NEVER_NULL = set(MEMBER_COLUMNS)
# The columns Cognito finds memberships by, most selective first.
_KEYS = (ROWID, "username", "group_name")

# The users table's columns IMPORT FOREIGN SCHEMA declares in group_members too.
_IMPORTED_USER_COLUMNS = ("sub", "email", "enabled", "status")

# The HINTs of a membership change naming a user or a group Cognito does not have.
_NO_USER = (
    "Create the user in Cognito first (AdminCreateUser), or check the name: SELECT username "
    "FROM a foreign table of object 'users'."
)
_NO_GROUP = (
    "Create the group in Cognito first (CreateGroup), or check the name: SELECT group_name "
    "FROM a foreign table of object 'groups'."
)

# Planner guesses: rows a scan returns.
_MEMBERS_PER_USER = 5
_MEMBERS_PER_GROUP = 100


class Members(Table):
    """The ``group_members`` table, its scans and its pending changes."""

    object = "group_members"
    importable_writable = True

    def __init__(
        self,
        options,
        pool: Pool,
        fdw_columns: Mapping,
        progress=None,
        transaction: Transaction = changes.transaction,
    ):
        super().__init__(options, pool, fdw_columns, progress)
        self.writable = options.writable
        # A writable table reads Cognito itself: what a DELETE finds and what a COMMIT
        # plans from must be what Cognito holds now, never a cached answer.
        self.reads = pool.uncached() if self.writable else pool
        self.log = ChangeLog()
        self.transaction = transaction
        problems = [
            f"{name}: type {fdw_columns[name].type_name} cannot hold a name; use text"
            for name in ("group_name", ROWID)
            if name in fdw_columns
            and type_family(fdw_columns[name]) not in EXACT_TEXT_TYPES | {"citext"}
        ]
        if problems:
            raise unreadable_columns(
                problems, "Declare group_name and membership as text or varchar."
            )
        user_columns = {k: v for k, v in fdw_columns.items() if k not in ("group_name", ROWID)}
        self.user_columns = resolve_columns(user_columns, pool.custom_attributes)
        self.has_rowid = ROWID in fdw_columns
        self._cache = LookupCache()

    @classmethod
    def imported_columns(cls, custom) -> list[ImportedColumn]:
        users = {column.name: column for column in Users.imported_columns({})}
        own = [ImportedColumn(name, IMPORT_TYPES[STRING]) for name in MEMBER_COLUMNS]
        return own + [users[name] for name in _IMPORTED_USER_COLUMNS]

    # -- planning ----------------------------------------------------------------------

    def plan(self, quals) -> plans.Plan:
        """How a scan with these quals reads Cognito: AdminListGroupsForUser for each user a
        ``membership`` or ``username`` qual names (BY_USER), ListUsersInGroup for each group
        a ``group_name`` qual names (BY_GROUP), every group's members (ALL), or nothing (NONE:
        ``pushed`` cannot be true); ``pushed`` is the text of the condition that decided it."""
        collations = once(self.collations)
        condition = impossible(quals, _NEVER_NULL)
        if condition is not None:
            return plans.Plan(plans.NONE, (), 1, condition)
        keys = [name for name in _KEYS if name in self.fdw_columns]
        found = None
        if pushable(self.fdw_columns, ROWID, collations):
            found = equal_values(quals, ROWID, names=False)
        if found is not None:
            pairs = [k for k in map(parse_membership, found[0]) if k]
            names = [u for g, u in pairs if is_cognito_name(g) and is_cognito_name(u)]
            kind = plans.BY_USER
        else:
            kind, names = plans.ALL, []
            for by, column in ((plans.BY_USER, "username"), (plans.BY_GROUP, "group_name")):
                if pushable(self.fdw_columns, column, collations):
                    found = equal_values(quals, column)
                    if found is not None:
                        kind, names = by, found[0]
                        break
        pushed = None if found is None else found[1]
        if kind != plans.ALL and not names:
            return plans.Plan(plans.NONE, (), 1, pushed)
        refused = refusals(quals, pushed, keys, self.fdw_columns, collations, "memberships")
        per_name = {plans.BY_USER: _MEMBERS_PER_USER, plans.BY_GROUP: _MEMBERS_PER_GROUP}
        rows = per_name.get(kind, 0) * len(names)  # ALL: 0, the pool's size decides
        return plans.Plan(kind, (), rows, pushed, refused, values=tuple(dict.fromkeys(names)))

    def rel_size(self, quals, columns) -> tuple[int, int, int]:
        rows = self.plan(quals).estimated_rows or self.pool.estimated_users() * 2
        return rows, len(columns) * COLUMN_WIDTH, 0

    def path_keys(self) -> list:
        # Only text columns: EXPLAIN of a join parameter of a by-reference type such as citext
        # crashes the backend (docs/multicorn.md H1: EXPLAIN of a by-reference parameter crashes),
        # and citext is not pushed anyway.
        keys = [(ROWID, 1), ("username", _MEMBERS_PER_USER), ("group_name", _MEMBERS_PER_GROUP)]
        return [
            ((name,), rows)
            for name, rows in keys
            if pushable(self.fdw_columns, name, self.collations)
        ]

    def explain(self, quals, columns, limit=None, offset=None) -> list[str]:
        plan = self.plan(quals)
        if plan.kind == plans.NONE:
            return [plans.no_request_line(plan.pushed)]
        count = len(plan.values)
        if plan.kind == plans.BY_USER:
            lines = [
                f"Cognito: AdminListGroupsForUser for {count} user(s), page size {PAGE_SIZE}, "
                f"a request per {PAGE_SIZE} groups of each"
            ]
            if self._needs_user(columns):
                lines[0] += ", then the record of each one in a group"
                lines.extend(self._record_lines(plan.values))
        elif plan.kind == plans.BY_GROUP:
            lines = [
                f"Cognito: ListUsersInGroup for {count} group(s), page size {PAGE_SIZE}, "
                f"a request per {PAGE_SIZE} members of each"
            ]
        else:
            lines = [
                f"Cognito: ListGroups, then ListUsersInGroup for every group, page size "
                f"{PAGE_SIZE}, a request per {PAGE_SIZE} groups and per {PAGE_SIZE} members "
                "of each"
            ]
        return lines + plans.condition_lines(plan.pushed, plan.refused)

    def _record_lines(self, usernames) -> list[str]:
        requests = [request for name in usernames for request in self._lookup(name).requests]
        lines = [f"Cognito: {request.describe()}" for request in requests]
        if any(request.operation == plans.ADMIN_GET_USER for request in requests):
            lines.append(f"Cognito: billed: {plans.BILLED}")
        return lines

    def _lookup(self, username: str) -> plans.Plan:
        """The plan reading user ``username``'s record as the users table looks a username up
        (server option ``username_lookup``)."""
        return pushdown.username_plan(
            username,
            estimated_users=self.pool.estimated_users,
            username_lookup=self.options.username_lookup,
        )

    def _needs_user(self, columns) -> bool:
        # No columns means count(*) or a whole-row reference: read everything to be safe.
        wanted = set(columns) or {c.name for c in self.user_columns}
        return any(c.name in wanted and c.name not in _CHEAP for c in self.user_columns)

    # -- scanning ----------------------------------------------------------------------

    def rows(self, quals, columns, stats: Stats, limit=None, offset=None) -> Iterator[dict]:
        plan = self.plan(quals)
        if plan.kind == plans.NONE:
            return
        if plan.kind in (plans.BY_USER, plans.BY_GROUP):
            kind = "users" if plan.kind == plans.BY_USER else "groups"
            count = len(dict.fromkeys(plan.values))
            per = 2 if kind == "users" and self._needs_user(columns) else 1
            operation = "AdminListGroupsForUser" if kind == "users" else "ListUsersInGroup"
            budget.statement.check_plan(
                count * per,
                self.options.max_requests_per_statement,
                f"{operation} for {count} {kind}" + (" and their records" if per > 1 else ""),
            )
        self._cache.claim(backend.statement_started())
        if plan.kind == plans.BY_USER:
            for username in plan.values:
                yield from self._user_rows(username, self._needs_user(columns), stats)
            return
        names = (
            plan.values
            if plan.kind == plans.BY_GROUP
            else [
                g["GroupName"]
                for g in self.reads.remembered(
                    stats, "ListGroups", (), self.reads.items("ListGroups", "Groups", stats)
                )
            ]
        )
        for group in dict.fromkeys(names):
            yield from self._group_rows(group, stats)
        if plan.kind == plans.ALL:
            # Groups created by nobody: pending adds to groups the listing did not show.
            listed = set(names)
            for key in self.log.pending_adds():
                if key[0] not in listed:
                    self.log.showed_pending(key)
                    yield self._row(key[0], {"Username": key[1]}, stats)

    def _user_rows(self, username: str, needs_user: bool, stats: Stats) -> Iterator[dict]:
        try:
            groups = [
                g["GroupName"]
                for g in self.reads.remembered(
                    stats,
                    "AdminListGroupsForUser",
                    (username,),
                    self.reads.items("AdminListGroupsForUser", "Groups", stats, Username=username),
                )
            ]
        except CognitoApiError as exc:
            if not exc.missing():
                raise
            groups = []
        user = {"Username": username}
        if needs_user and groups:
            # The row keeps the name the query asked for: its groups were read by it.
            user = {**(self._user_record(username, stats) or {}), "Username": username}
        for group in groups:
            if self.log.wanted((group, username)) is not False:
                yield self._row(group, user, stats)
        for group, user_name in self.log.pending_adds():
            if user_name == username and group not in groups:
                self.log.showed_pending((group, user_name))
                yield self._row(group, {"Username": username}, stats)

    def _user_record(self, username: str, stats: Stats) -> Mapping | None:
        """The record of user ``username``, None when the lookup finds no such user (a user
        ListUsers does not show yet: it is eventually consistent)."""
        found = list(run(self._lookup(username), self.reads, stats, self._cache, self.progress))
        exact = [user for user in found if user.get("Username") == username]
        if exact:
            return exact[0]
        # A pool whose usernames ignore case matched another spelling: the same user.
        folded = [u for u in found if str(u.get("Username")).casefold() == username.casefold()]
        return folded[0] if len(folded) == 1 else None

    def _group_rows(self, group: str, stats: Stats) -> Iterator[dict]:
        seen = set()
        try:
            users = self.reads.items("ListUsersInGroup", "Users", stats, GroupName=group)
            for user in self.reads.remembered(stats, "ListUsersInGroup", (group,), users):
                key = (group, user["Username"])
                seen.add(key[1])
                if self.log.wanted(key) is not False:
                    yield self._row(group, user, stats)
        except CognitoApiError as exc:
            if not exc.missing():
                raise
        for key in self.log.pending_adds():
            if key[0] == group and key[1] not in seen:
                self.log.showed_pending(key)
                yield self._row(group, {"Username": key[1]}, stats)

    def _row(self, group: str, user: Mapping, stats: Stats) -> dict:
        stats.rows += 1
        row = user_row(user, self.user_columns)
        row["group_name"] = group
        if self.has_rowid:
            row[ROWID] = membership_key(group, user["Username"])
        return row

    def end_scan(self) -> None:
        self._cache.clear()

    # -- writing -----------------------------------------------------------------------

    def rowid_column(self) -> str:
        """The rowid column, or an error saying how to make the table writable."""
        if not self.writable:
            raise CognitoFdwError(
                "group_members is read-only: set the table option writable 'true' to add and "
                "remove members with INSERT and DELETE",
                hint=f"ALTER FOREIGN TABLE {THIS_TABLE} OPTIONS (ADD writable 'true'); changes "
                "are sent to Cognito at COMMIT.",
            )
        if not self.has_rowid:
            raise CognitoFdwError(
                "writable group_members needs the column membership",
                hint=f"ALTER FOREIGN TABLE {THIS_TABLE} ADD COLUMN membership text; it "
                "identifies the row for DELETE.",
            )
        return ROWID

    def insert(self, values: Mapping) -> dict:
        group, username = values.get("group_name"), values.get("username")
        if not isinstance(group, str) or not isinstance(username, str) or not group or not username:
            raise CognitoFdwError(
                "INSERT into group_members needs group_name and username",
                hint="INSERT INTO group_members (group_name, username) VALUES ('admins', 'alice')",
            )
        given = values.get(ROWID)
        if given is not None and parse_membership(given) != (group, username):
            raise CognitoFdwError(
                f"membership {given!r} does not match group_name and username",
                hint="Leave membership out of the INSERT: it is derived from the other two.",
            )
        self.log.add(group, username)
        self.transaction.join(self.log, self.plan_commit)
        return dict(values, **{ROWID: membership_key(group, username)})

    def delete(self, rowid) -> None:
        # Multicorn passes the rowid value only (docs/multicorn.md M4: hook order and savepoints).
        key = parse_membership(rowid)
        if key is None:
            raise CognitoFdwError(f"invalid membership value {rowid!r}")
        self.log.remove(*key)
        self.transaction.join(self.log, self.plan_commit)

    def update(self, rowid, values: Mapping) -> dict:
        raise CognitoFdwError(
            "UPDATE is not supported on group_members",
            hint="DELETE the membership and INSERT the new one, in one transaction.",
        )

    def plan_commit(self, stats: Stats) -> list:
        """The (change, sender) steps that bring Cognito to what the transaction wants, as
        Cognito is now: every changed user's groups are read here, at COMMIT, whatever a
        scan saw earlier (another session may have changed them since)."""
        for username in self.log.users():
            try:
                groups = {
                    g["GroupName"]
                    for g in self.pool.items(
                        "AdminListGroupsForUser", "Groups", stats, Username=username
                    )
                }
            except CognitoApiError as exc:
                if exc.code != "UserNotFoundException":
                    raise exc.reworded(
                        f"cannot read the groups of user {username!r} at COMMIT: {exc.message}; "
                        "the transaction is rolled back and nothing was sent"
                    ) from None
                groups = set()  # adding the user then fails, naming the user and the group
            self.log.observe_user(username, groups)
        return [(change, lambda c: self._send(c, stats)) for change in self.log.plan()]

    def _send(self, change: Change, stats: Stats) -> bool:
        operation = "AdminAddUserToGroup" if change.add else "AdminRemoveUserFromGroup"
        try:
            self.pool.call(operation, stats, GroupName=change.group_name, Username=change.username)
        except CognitoApiError as exc:
            if not exc.missing():
                raise
            if not change.add:
                return False  # gone since it was read: no member to remove, so quiet
            if exc.code == "UserNotFoundException":
                what, hint = f"user {change.username!r}", _NO_USER
            else:
                what, hint = f"group {change.group_name!r}", _NO_GROUP
            raise exc.reworded(
                f"Cognito {operation} failed: {what} does not exist in user pool "
                f"{self.options.user_pool_id} ({exc.code})",
                hint=hint,
            ) from None
        finally:
            # Sent or maybe sent: every backend's cached memberships of the pool are stale.
            self.pool.forget_memberships()
        return True
