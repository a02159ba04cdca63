"""Pending membership changes of one transaction, with savepoints: pure, no I/O.

Nothing reaches Cognito before COMMIT, so INSERT and DELETE on ``group_members`` only
record what the transaction wants: a (group, username) key is wanted present or absent.
The last wish for a key wins, which is what SQL gives: a row inserted then deleted is gone.

Alongside the wishes a table's :class:`ChangeLog` keeps what scans *saw* in Cognito
(present or absent) during the transaction.  At COMMIT a change is sent only where the wish
differs from what Cognito holds, so inserting an existing member or deleting a row inserted
in the same transaction sends nothing, and undoing a failed COMMIT never removes a
membership that was there before.

One owner, :data:`transaction`, holds every table's log for the backend's open transaction,
with its savepoints and its COMMIT (:class:`Transaction`); the wrapper's transaction hooks
drive it.  Only wishes are rolled back to a savepoint; observations describe Cognito and
stay true.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

from .errors import CognitoFdwError

Key = tuple  # (group_name, username)


def membership_key(group_name: str, username: str) -> str:
    """The membership column's value: unambiguous for any group and user name.

    The same text as PostgreSQL's ``json_build_array(group_name, username)::text``, so SQL can
    compute a key.  Multicorn fails on that call as a bare qual (docs/multicorn.md H5: CURRENT_USER
    and kin fail as quals), so wrap it:
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


@dataclasses.dataclass(frozen=True)
class Change:
    """One request to send: add (or remove) ``username`` to (from) ``group_name``."""

    group_name: str
    username: str
    add: bool

    @property
    def key(self) -> Key:
        return (self.group_name, self.username)

    def undo(self) -> Change:
        return Change(self.group_name, self.username, not self.add)

    def describe(self) -> str:
        verb = "add" if self.add else "remove"
        word = "to" if self.add else "from"
        return f"{verb} user {self.username!r} {word} group {self.group_name!r}"


class ChangeLog:
    """What one transaction wants changed in Cognito, and what it has seen there."""

    def __init__(self):
        self._wanted: dict[Key, bool] = {}
        self._seen: dict[Key, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._wanted)

    def clear(self) -> None:
        """The transaction ended (COMMIT, ROLLBACK): forget everything."""
        self._wanted.clear()
        self._seen.clear()

    # -- statements --------------------------------------------------------------------

    def add(self, group_name: str, username: str) -> None:
        self._wanted[(group_name, username)] = True

    def remove(self, group_name: str, username: str) -> None:
        self._wanted[(group_name, username)] = False

    def wanted(self, key: Key) -> bool | None:
        """True/False if the transaction changed this membership, None if it did not."""
        return self._wanted.get(key)

    def pending_adds(self) -> list[Key]:
        """Memberships the transaction added, in the order it added them."""
        return [key for key, present in self._wanted.items() if present]

    def observe(self, key: Key, present: bool) -> None:
        """Record what a scan found in Cognito for this membership."""
        self._seen[key] = present

    def observe_user(self, username: str, groups: set[str]) -> None:
        """Record a user's complete list of groups, as read from Cognito."""
        for group, user in self._wanted:
            if user == username:
                self._seen[(group, user)] = group in groups

    # -- savepoints (driven by Transaction) ------------------------------------------------

    def wishes(self) -> dict[Key, bool]:
        """A copy of the wishes, to restore at a ROLLBACK TO SAVEPOINT."""
        return dict(self._wanted)

    def restore(self, wishes: dict[Key, bool]) -> None:
        self._wanted = dict(wishes)

    # -- COMMIT ------------------------------------------------------------------------

    def unknown_users(self) -> list[str]:
        """Users whose current groups must be read before the changes can be planned."""
        users: dict[str, None] = {}
        for key in self._wanted:
            if key not in self._seen:
                users[key[1]] = None
        return list(users)

    def plan(self) -> list[Change]:
        """The requests that bring Cognito to what the transaction wants, in order.

        Every key must have been observed (see :meth:`unknown_users`); one that was not is
        treated as unknown and sent, since adding a member and removing a non-member are
        harmless in Cognito.
        """
        return [
            Change(group, user, present)
            for (group, user), present in self._wanted.items()
            if self._seen.get((group, user)) is not present
        ]


# Sends one change; False when there was nothing to change after all.
Send = Callable[[Change], bool]
# A table's COMMIT: given the caller's context (its request accounting), the (change,
# sender) steps that bring Cognito to what the table's log wants.
Planner = Callable[[object], list[tuple[Change, Send]]]


class Transaction:
    """Every table's pending changes in the backend's open transaction: their one owner.

    Multicorn makes one wrapper instance per table, and drops it for a new one when the table's
    options change, even in mid-transaction (ALTER, SET ROLE to another user mapping:
    docs/multicorn.md M3: one instance per backend and table); the dropped one gets no more hooks,
    yet its changes must be sent at COMMIT.  So no instance owns them: a table joins (:meth:`join`)
    with its log when it first records a change, and the hooks of any instance drive all of them.
    Each hook is idempotent, as Multicorn calls it once per instance (docs/multicorn.md M4: hook
    order and savepoints):

    * ``sub_begin(level)`` comes when an instance is first touched inside a savepoint, so
      the first one at a level precedes every change made at that level: it takes the
      snapshot, the next ones find it taken;
    * ``sub_rollback(level)`` restores the snapshot's wishes (a log that joined since
      then had none), ``sub_commit(level)`` (RELEASE) drops it, keeping the changes in the
      enclosing savepoint;
    * :meth:`send` (from ``pre_commit``) sends every table's changes or none, and
      :meth:`clear` (``commit``, ``rollback``) forgets them; it cannot raise, as an error in
      ``commit()`` PANICs the server (docs/multicorn.md H4: an error in commit PANICs the server).
    """

    def __init__(self):
        self._tables: dict[int, tuple[ChangeLog, Planner]] = {}
        self._savepoints: list[tuple[int, dict[int, dict[Key, bool]]]] = []

    def __bool__(self) -> bool:
        return any(log for log, _ in self._tables.values())

    def join(self, log: ChangeLog, planner: Planner) -> None:
        """Register a table's log (and how to plan its COMMIT); again is harmless."""
        if id(log) not in self._tables:
            self._tables[id(log)] = (log, planner)

    def sub_begin(self, level: int) -> None:
        if all(lvl != level for lvl, _ in self._savepoints):
            snapshot = {key: log.wishes() for key, (log, _) in self._tables.items()}
            self._savepoints.append((level, snapshot))

    def sub_commit(self, level: int) -> None:
        self._savepoints = [(lvl, snap) for lvl, snap in self._savepoints if lvl < level]

    def sub_rollback(self, level: int) -> None:
        for index, (lvl, snapshot) in enumerate(self._savepoints):
            if lvl >= level:
                for key, (log, _) in self._tables.items():
                    log.restore(snapshot.get(key, {}))
                del self._savepoints[index:]
                return

    def send(self, context) -> None:
        """Send every table's changes, planned with ``context`` (see :data:`Planner`); on a
        failure undo those sent and raise (:func:`apply`).  Forgets them all either way."""
        try:
            apply([step for log, plan in list(self._tables.values()) for step in plan(context)])
        finally:
            self.clear()

    def clear(self) -> None:
        """The transaction ended: forget every table's changes and savepoints."""
        for log, _ in self._tables.values():
            log.clear()
        self._tables.clear()
        self._savepoints.clear()


# The backend's open transaction (a backend runs one at a time).
transaction = Transaction()


def apply(steps: list[tuple[Change, Send]]) -> None:
    """Send each change with its sender, in order; on a failure undo those sent, then raise.

    Each change carries its own sender, so the changes of several tables (possibly on
    different pools) commit or are undone together.  The error names the change that
    failed, says that the transaction is rolled back, and lists every change that was
    sent but could not be undone (those need a person).
    """
    done: list[tuple[Change, Send]] = []
    for change, send in steps:
        try:
            changed = send(change)
        except CognitoFdwError as exc:
            raise _failed(change, exc, done, _undo(done)) from None
        if changed:
            done.append((change, send))


def _undo(done: list[tuple[Change, Send]]) -> list[tuple[Change, str]]:
    stuck = []
    for change, send in reversed(done):
        try:
            send(change.undo())
        except CognitoFdwError as exc:
            stuck.append((change, exc.message))
    return stuck


def _failed(change, exc, done, stuck) -> CognitoFdwError:
    message = f"cannot {change.describe()} at COMMIT: {exc.message}; the transaction is rolled back"
    details = [exc.detail] if exc.detail else []
    if stuck:
        message += (
            "; NOT undone in Cognito: " + ", ".join(c.describe() for c, _ in stuck) + " (applied)"
        )
        details += [f"undo of '{c.describe()}' failed: {why}" for c, why in stuck]
    elif done:
        details.append(
            f"undone in Cognito: the {len(done)} change(s) this COMMIT had already applied"
        )
    return CognitoFdwError(message, hint=exc.hint, detail="; ".join(details) or None)
