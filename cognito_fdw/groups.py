"""The ``groups`` and ``group_members`` foreign tables: columns, scans, writes.

``groups`` (table option ``object 'groups'``) lists the pool's groups.  ``group_members``
(``object 'group_members'``) has one row per membership: ``group_name``, ``username``, a
``membership`` key, and any column of the users table (``sub``, ``email``, ...).

How a scan of group_members reaches Cognito (PostgreSQL re-checks every qual):

* ``membership = k`` or ``username = u``: one AdminListGroupsForUser for the user (plus one
  AdminGetUser when a user column other than username is read);
* ``group_name = g``: one ListUsersInGroup of that group (users come with their attributes);
* ``IN (...)`` lists of either: one of the above per value;
* a qual no row can satisfy (a comparison with NULL, ``= ANY`` of an empty array, only
  names Cognito could not hold; :func:`pushdown.cannot_match`): no request at all;
* otherwise: ListGroups, then ListUsersInGroup for every group.

With ``writable 'true'``, INSERT and DELETE record changes in a :class:`ChangeLog`; they are
sent at COMMIT by :func:`commit_pending`, from the wrapper's ``pre_commit``.  Scans in the
transaction see those changes (rows added in it show NULL for the user columns until
COMMIT).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

from . import backend, changes, pushdown
from .changes import Change, ChangeLog
from .client import PAGE_SIZE, Pool, Stats, is_cognito_name
from .columns import (
    INSTANT,
    NUMBER,
    STRING,
    Column,
    _family,
    _renderer,
    resolve_columns,
    type_problem,
    unreadable_columns,
)
from .errors import CognitoApiError, CognitoFdwError
from .rows import user_row

# name -> (group record field, kind, description); drives resolution and the README.
GROUP_COLUMNS = {
    "group_name": ("GroupName", STRING, "the group's name (GroupName)"),
    "description": ("Description", STRING, "Description"),
    "precedence": ("Precedence", NUMBER, "Precedence (lower wins in the token's cognito:roles)"),
    "role_arn": ("RoleArn", STRING, "RoleArn: the IAM role of the group"),
    "created_at": ("CreationDate", INSTANT, "CreationDate"),
    "updated_at": ("LastModifiedDate", INSTANT, "LastModifiedDate"),
}

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
_TEXT_FAMILIES = {"text", "character varying", "varchar"}

# Planner guesses: rows a scan returns.
_MEMBERS_PER_USER = 5
_MEMBERS_PER_GROUP = 100


def membership_key(group_name: str, username: str) -> str:
    """The membership column's value: unambiguous for any group and user name.

    The same text as PostgreSQL's ``json_build_array(group_name, username)::text``, so SQL
    can compute a key.  Multicorn fails on that call as a bare qual, so wrap it:
    ``WHERE membership = (SELECT json_build_array('admins', 'alice')::text)``.
    """
    return json.dumps([group_name, username], ensure_ascii=False)


def parse_membership(value) -> tuple[str, str] | None:
    """(group_name, username) from a membership value, or None if it is not one."""
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        return None
    if isinstance(parsed, list) and len(parsed) == 2 and all(isinstance(p, str) for p in parsed):
        return parsed[0], parsed[1]
    return None


def resolve_group_columns(fdw_columns: Mapping) -> list[Column]:
    """The groups table's columns, or one :class:`ColumnError` naming every bad one."""
    resolved, problems = [], []
    for name, definition in fdw_columns.items():
        family = _family(definition.base_type_name or definition.type_name)
        if name not in GROUP_COLUMNS:
            problems.append(f"{name}: not a column of groups")
            continue
        field, kind, _ = GROUP_COLUMNS[name]
        problem = type_problem(name, definition.type_name, kind, family, uuid_ok=False)
        if problem:
            problems.append(problem)
            continue
        resolved.append(Column(name, field, None, kind, _renderer(kind, family)))
    if problems:
        raise unreadable_columns(
            problems, "Columns of object 'groups': " + ", ".join(GROUP_COLUMNS) + "."
        )
    return resolved


def _pushable(fdw_columns: Mapping, name: str, options) -> bool:
    # Cognito compares names exactly; a citext column compares without case, and neither
    # may a nondeterministic collation apply (pushdown.REFUSALS["collation"]): pushing its
    # value would lose rows that PostgreSQL's re-check would have kept.
    definition = fdw_columns.get(name)
    return (
        definition is not None
        and _family(definition.base_type_name or definition.type_name) in _TEXT_FAMILIES
        and (options.deterministic_collations or not backend.nondeterministic_collations())
    )


def _impossible(quals, never_null) -> str | None:
    """The text of the first qual no row can satisfy, or None.  ``never_null`` holds the
    columns that are NULL in no row."""
    for qual in quals:
        if pushdown.cannot_match(qual, qual.field_name in never_null):
            return pushdown.qual_text(qual)
    return None


def _equal_values(quals, name: str) -> tuple[list, str] | None:
    """The values a qual ``name = v`` or ``name IN (...)`` allows and the qual's text, or
    None if there is no such qual.

    Values that cannot be a Cognito name match nothing, so they are dropped here rather than
    sent (Cognito would refuse them).
    """
    for qual in quals:
        if qual.field_name != name:
            continue
        if qual.operator == "=" and isinstance(qual.value, str):
            values = [qual.value]
        elif qual.operator == ("=", True) and isinstance(qual.value, list):
            values = [v for v in qual.value if isinstance(v, str)]
        else:
            continue
        if name != ROWID:
            values = [v for v in values if is_cognito_name(v)]
        return values, pushdown.qual_text(qual)
    return None


def _pages(pool: Pool, operation: str, key: str, stats: Stats, **params) -> Iterator[Mapping]:
    for page in pool.pages(operation, key, "NextToken", stats, **params):
        yield from page


def _missing(exc: CognitoApiError) -> bool:
    """True when Cognito says the group or user does not exist (rather than the pool)."""
    if exc.code == "UserNotFoundException":
        return True
    return exc.code == "ResourceNotFoundException" and "user pool" not in (exc.detail or "").lower()


class Groups:
    """The ``groups`` table."""

    def __init__(self, pool: Pool, fdw_columns: Mapping):
        self.pool = pool
        self.columns = resolve_group_columns(fdw_columns)
        self._fdw_columns = fdw_columns

    def _names(self, quals) -> tuple[list | None, str | None]:
        """(the group names to get, or None for all; the condition that cannot be true)."""
        impossible = _impossible(quals, {"group_name"})
        if impossible is not None:
            return [], impossible
        found = _equal_values(quals, "group_name")
        if found is None or not _pushable(self._fdw_columns, "group_name", self.pool.options):
            return None, None
        return found[0], None if found[0] else found[1]

    def rel_size(self, quals) -> int:
        names, _ = self._names(quals)
        return 20 if names is None else max(1, len(names))

    def explain(self, quals) -> list[str]:
        names, impossible = self._names(quals)
        if impossible is not None:
            return [pushdown.no_request_line(impossible)]
        if names is None:
            return [f"Cognito: ListGroups, page size {PAGE_SIZE}, all pages"]
        return [f"Cognito: GetGroup for {len(names)} group(s)"]

    def rows(self, quals, stats: Stats) -> Iterator[dict]:
        names, _ = self._names(quals)
        for group in self._groups(names, stats):
            stats.rows += 1
            yield {column.name: column.value(group, {}) for column in self.columns}

    def _groups(self, names, stats) -> Iterator[Mapping]:
        if names is None:
            yield from _pages(self.pool, "list_groups", "Groups", stats)
            return
        for name in dict.fromkeys(names):
            try:
                yield self.pool.call("get_group", stats, GroupName=name)["Group"]
            except CognitoApiError as exc:
                if not _missing(exc):
                    raise


class Members:
    """The ``group_members`` table, its scans and its pending changes."""

    def __init__(self, pool: Pool, fdw_columns: Mapping, writable: bool, log: ChangeLog):
        self.pool = pool
        self.writable = writable
        self.log = log
        self._fdw_columns = fdw_columns
        problems = [
            f"{name}: type {fdw_columns[name].type_name} cannot hold a name; use text"
            for name in ("group_name", ROWID)
            if name in fdw_columns
            and _family(fdw_columns[name].base_type_name or fdw_columns[name].type_name)
            not in _TEXT_FAMILIES | {"citext"}
        ]
        if problems:
            raise unreadable_columns(
                problems, "Declare group_name and membership as text or varchar."
            )
        user_columns = {k: v for k, v in fdw_columns.items() if k not in ("group_name", ROWID)}
        self.user_columns = resolve_columns(user_columns, pool.custom_attributes)
        self.has_rowid = ROWID in fdw_columns

    # -- planning ----------------------------------------------------------------------

    def plan(self, quals) -> tuple[str, list]:
        """How a scan reads Cognito: ("users", names), ("groups", names), ("all", []), or
        ("none", [the condition that cannot be true]) for no request at all."""
        impossible = _impossible(quals, _NEVER_NULL)
        if impossible is not None:
            return "none", [impossible]
        found = (
            _equal_values(quals, ROWID)
            if _pushable(self._fdw_columns, ROWID, self.pool.options)
            else None
        )
        if found is not None:
            pairs = [k for k in map(parse_membership, found[0]) if k]
            names = [u for g, u in pairs if is_cognito_name(g) and is_cognito_name(u)]
            return ("users", names) if names else ("none", [found[1]])
        for kind, column in (("users", "username"), ("groups", "group_name")):
            if _pushable(self._fdw_columns, column, self.pool.options):
                found = _equal_values(quals, column)
                if found is not None:
                    return (kind, found[0]) if found[0] else ("none", [found[1]])
        return "all", []

    def rel_size(self, quals) -> int:
        kind, values = self.plan(quals)
        if kind == "users":
            return max(1, _MEMBERS_PER_USER * len(values))
        if kind == "groups":
            return max(1, _MEMBERS_PER_GROUP * len(values))
        if kind == "none":
            return 1
        return self.pool.estimated_users() * 2

    def path_keys(self) -> list:
        # Only text columns: EXPLAIN of a join parameter of a by-reference type such as
        # citext crashes the backend (docs/multicorn.md H1), and citext is not pushed anyway.
        keys = [(ROWID, 1), ("username", _MEMBERS_PER_USER), ("group_name", _MEMBERS_PER_GROUP)]
        return [
            ((name,), rows)
            for name, rows in keys
            if _pushable(self._fdw_columns, name, self.pool.options)
        ]

    def explain(self, quals, columns) -> list[str]:
        kind, values = self.plan(quals)
        if kind == "none":
            return [pushdown.no_request_line(values[0])]
        if kind == "users":
            extra = ", and AdminGetUser" if self._needs_user(columns) else ""
            return [f"Cognito: AdminListGroupsForUser{extra} for {len(values)} user(s)"]
        if kind == "groups":
            return [f"Cognito: ListUsersInGroup for {len(values)} group(s)"]
        return ["Cognito: ListGroups, then ListUsersInGroup for every group"]

    def _needs_user(self, columns) -> bool:
        # No columns means count(*) or a whole-row reference: read everything to be safe.
        wanted = set(columns) or {c.name for c in self.user_columns}
        return any(c.name in wanted and c.name not in _CHEAP for c in self.user_columns)

    # -- scanning ----------------------------------------------------------------------

    def rows(self, quals, columns, stats: Stats) -> Iterator[dict]:
        kind, values = self.plan(quals)
        if kind == "none":
            return
        if kind == "users":
            for username in dict.fromkeys(values):
                yield from self._user_rows(username, self._needs_user(columns), stats)
            return
        names = (
            values
            if kind == "groups"
            else [g["GroupName"] for g in _pages(self.pool, "list_groups", "Groups", stats)]
        )
        for group in dict.fromkeys(names):
            yield from self._group_rows(group, stats)
        if kind == "all":
            # Groups created by nobody: pending adds to groups the listing did not show.
            listed = set(names)
            for key in self.log.pending_adds():
                if key[0] not in listed:
                    self.log.observe(key, False)
                    yield self._row(key[0], {"Username": key[1]}, stats)

    def _user_rows(self, username: str, needs_user: bool, stats: Stats) -> Iterator[dict]:
        try:
            groups = [
                g["GroupName"]
                for g in _pages(
                    self.pool, "admin_list_groups_for_user", "Groups", stats, Username=username
                )
            ]
            user = (
                self.pool.call("admin_get_user", stats, Username=username)
                if needs_user and groups
                else {"Username": username}
            )
        except CognitoApiError as exc:
            if not _missing(exc):
                raise
            groups, user = [], {"Username": username}
        self.log.observe_user(username, set(groups))
        for group in groups:
            if self.log.wanted((group, username)) is not False:
                yield self._row(group, user, stats)
        for group, user_name in self.log.pending_adds():
            if user_name == username and group not in groups:
                yield self._row(group, {"Username": username}, stats)

    def _group_rows(self, group: str, stats: Stats) -> Iterator[dict]:
        seen = set()
        try:
            for user in _pages(self.pool, "list_users_in_group", "Users", stats, GroupName=group):
                key = (group, user["Username"])
                seen.add(key[1])
                wanted = self.log.wanted(key)
                # Only keys the transaction changed: a big group must not fill memory.
                if wanted is not None:
                    self.log.observe(key, True)
                if wanted is not False:
                    yield self._row(group, user, stats)
        except CognitoApiError as exc:
            if not _missing(exc):
                raise
        for key in self.log.pending_adds():
            if key[0] == group and key[1] not in seen:
                self.log.observe(key, False)
                yield self._row(group, {"Username": key[1]}, stats)

    def _row(self, group: str, user: Mapping, stats: Stats) -> dict:
        stats.rows += 1
        row = user_row(user, self.user_columns)
        row["group_name"] = group
        if self.has_rowid:
            row[ROWID] = membership_key(group, user["Username"])
        return row

    # -- writing -----------------------------------------------------------------------

    def check_writable(self) -> str:
        """The rowid column, or an error saying how to make the table writable."""
        if not self.writable:
            raise CognitoFdwError(
                "group_members is read-only: set the table option writable 'true' to add and "
                "remove members with INSERT and DELETE",
                hint="ALTER FOREIGN TABLE <table> OPTIONS (ADD writable 'true'); changes are "
                "sent to Cognito at COMMIT.",
            )
        if not self.has_rowid:
            raise CognitoFdwError(
                "writable group_members needs the column membership",
                hint="ALTER FOREIGN TABLE <table> ADD COLUMN membership text; it identifies "
                "the row for DELETE.",
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
        _pending[id(self)] = self
        return dict(values, **{ROWID: membership_key(group, username)})

    def delete(self, rowid) -> None:
        key = parse_membership(rowid)
        if key is None:
            raise CognitoFdwError(f"invalid membership value {rowid!r}")
        if self.log.wanted(key) is None:
            # The scan yielded it and the transaction had not added it: it is in Cognito.
            self.log.observe(key, True)
        self.log.remove(*key)
        _pending[id(self)] = self

    @staticmethod
    def refuse_update() -> None:
        raise CognitoFdwError(
            "UPDATE is not supported on group_members",
            hint="DELETE the membership and INSERT the new one, in one transaction.",
        )

    def plan_commit(self, stats: Stats) -> list:
        """The (change, sender) steps that bring Cognito to what the transaction wants."""
        for username in self.log.unknown_users():
            try:
                groups = {
                    g["GroupName"]
                    for g in _pages(
                        self.pool, "admin_list_groups_for_user", "Groups", stats, Username=username
                    )
                }
            except CognitoApiError as exc:
                if exc.code != "UserNotFoundException":
                    raise CognitoApiError(
                        f"cannot read the groups of user {username!r} at COMMIT: {exc.message}; "
                        "the transaction is rolled back and nothing was sent",
                        hint=exc.hint,
                        detail=exc.detail,
                        code=exc.code,
                    ) from None
                groups = set()  # adding the user then fails, naming the user and the group
            self.log.observe_user(username, groups)
        return [(change, lambda c: self._send(c, stats)) for change in self.log.plan()]

    def _send(self, change: Change, stats: Stats) -> bool:
        api, operation = (
            ("AdminAddUserToGroup", "admin_add_user_to_group")
            if change.add
            else ("AdminRemoveUserFromGroup", "admin_remove_user_from_group")
        )
        try:
            self.pool.call(operation, stats, GroupName=change.group_name, Username=change.username)
        except CognitoApiError as exc:
            if not _missing(exc):
                raise
            if not change.add:
                return False  # gone since it was read: no member to remove, so quiet
            what = (
                f"user {change.username!r}"
                if exc.code == "UserNotFoundException"
                else f"group {change.group_name!r}"
            )
            raise CognitoApiError(
                f"Cognito {api} failed: {what} does not exist in user pool "
                f"{self.pool.options.user_pool_id} ({exc.code})",
                hint="Create the group in Cognito first (CreateGroup), or check the names: "
                "SELECT group_name FROM the groups table, username FROM the users table.",
                detail=exc.detail,
                code=exc.code,
                request_id=exc.request_id,
            ) from None
        return True


# Tables with changes not yet sent, across wrapper instances.  Multicorn drops an instance
# and makes a new one when the table's options change, even in mid-transaction (ALTER,
# SET ROLE to another user mapping), and the dropped one gets no more hooks; its changes
# must still be sent at COMMIT, by whichever instance's pre_commit runs first.
_pending: dict[int, Members] = {}


def has_pending() -> bool:
    return any(table.log for table in _pending.values())


def commit_pending(stats: Stats) -> None:
    """Send every table's changes; on a failure undo them all and raise."""
    steps = [step for table in list(_pending.values()) for step in table.plan_commit(stats)]
    changes.apply(steps)


def clear_pending() -> None:
    """The transaction ended: forget every table's changes."""
    for table in _pending.values():
        table.log.clear()
    _pending.clear()


def rollback_savepoint(level: int) -> None:
    # Idempotent for a table Multicorn also calls; reaches a dropped instance's log.
    for table in _pending.values():
        table.log.sub_rollback(level)


def release_savepoint(level: int) -> None:
    for table in _pending.values():
        table.log.sub_commit(level)
