"""Pending membership changes of one transaction, with savepoints: pure, no I/O.

Nothing reaches Cognito before COMMIT, so INSERT and DELETE on ``group_members`` only
record what the transaction wants: a (group, username) key is wanted present or absent.
The last wish for a key wins, which is what SQL gives: a row inserted then deleted is gone.

At COMMIT each changed user's groups are read again, just before the changes are sent,
and a change is sent only where the wish differs from what Cognito holds *then*: inserting
an existing member or deleting a row inserted in the same transaction sends nothing,
undoing a failed COMMIT never removes a membership that was there before, and of two
sessions writing one membership the one that commits last wins, as in PostgreSQL (what a
scan saw earlier in the transaction may have changed since: it decides nothing).

What COMMIT sent stays recorded until PostgreSQL says how the transaction ended: after the
wrapper's pre-commit hook PostgreSQL can still roll it back (SERIALIZABLE's commit-time
check, a cancel, another pre-commit hook's error).  Then the changes sent are undone, best
effort, and each one that could not be is reported as a WARNING naming group and user.

One owner, :data:`transaction`, holds every table's log for the backend's open transaction,
with its savepoints and its COMMIT (:class:`Transaction`); the wrapper's transaction hooks
drive it.  Only wishes are rolled back to a savepoint; observations describe Cognito and
stay true.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable

from .errors import CognitoFdwError, one_line

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
        # Rows a scan showed only because the transaction had added them (Cognito did not
        # have them): a DELETE of one takes back the transaction's own INSERT.
        self._pending_only: set[Key] = set()

    def __bool__(self) -> bool:
        return bool(self._wanted)

    def clear(self) -> None:
        """The transaction ended (COMMIT, ROLLBACK): forget everything."""
        self._wanted.clear()
        self._seen.clear()
        self._pending_only.clear()

    # -- statements --------------------------------------------------------------------

    def add(self, group_name: str, username: str) -> None:
        self._wanted[(group_name, username)] = True

    def remove(self, group_name: str, username: str) -> None:
        key = (group_name, username)
        if key in self._pending_only and self._wanted.get(key):
            # The row deleted was the transaction's own insert: together, no change (a
            # member another session adds meanwhile stays, as its row would in a table).
            del self._wanted[key]
            self._pending_only.discard(key)
            return
        self._wanted[key] = False

    def showed_pending(self, key: Key) -> None:
        """A scan showed this row only because the transaction added it."""
        self._pending_only.add(key)

    def wanted(self, key: Key) -> bool | None:
        """True/False if the transaction changed this membership, None if it did not."""
        return self._wanted.get(key)

    def pending_adds(self) -> list[Key]:
        """Memberships the transaction added, in the order it added them."""
        return [key for key, present in self._wanted.items() if present]

    def observe_user(self, username: str, groups: set[str]) -> None:
        """Record a user's complete list of groups, as read from Cognito at COMMIT."""
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

    def users(self) -> list[str]:
        """Every user whose memberships the transaction changed: their groups are read at
        COMMIT, just before the changes are planned and sent."""
        return list(dict.fromkeys(user for _, user in self._wanted))

    def plan(self) -> list[Change]:
        """The requests that bring Cognito to what the transaction wants, in order.

        Every user's groups must have been read (:meth:`users`, :meth:`observe_user`); a key
        that was not is treated as unknown and sent, since adding a member and removing a
        non-member are harmless in Cognito.
        """
        return [
            Change(group, user, present)
            for (group, user), present in self._wanted.items()
            if self._seen.get((group, user)) is not present
        ]


# Sends one change; False when there was nothing to change after all.
Send = Callable[[Change], bool]
# What the undo of sent changes runs inside (the wrapper's: cancels ignored, deadlines kept).
Undoing = Callable[[], contextlib.AbstractContextManager]
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
        # What send() applied, until PostgreSQL commits (forget) or aborts (undo).
        self._sent: list[tuple[Change, Send]] = []

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

    def send(self, context, undoing: Undoing = contextlib.nullcontext) -> None:
        """Send every table's changes, planned with ``context`` (see :data:`Planner`); on a
        failure undo those sent (inside ``undoing()``) and raise (:func:`apply`).  Forgets
        the wishes either way; what was applied is kept until :meth:`clear` (committed) or
        :meth:`undo_sent`."""
        try:
            steps = [step for log, plan in list(self._tables.values()) for step in plan(context)]
            self._sent = apply(steps, undoing)
        finally:
            self._forget_wishes()

    def undo_sent(
        self, warn: Callable[[str], None], undoing: Undoing = contextlib.nullcontext
    ) -> None:
        """The transaction rolled back after :meth:`send` applied changes: undo them, last
        first, best effort; ``warn`` gets one message for those undone and one for each
        change that could not be (group and user named).  Never raises (it runs in
        PostgreSQL's abort path); forgets everything."""
        sent, self._sent = self._sent, []
        try:
            if not sent:
                return
            stuck = _undo(sent, undoing)
            undone = [c for c, _ in sent if all(c is not s for s, _ in stuck)]
            if undone:
                warn(
                    "cognito_fdw: the transaction was rolled back after its COMMIT had sent "
                    f"{len(sent)} change(s) to Cognito; undone there: "
                    + ", ".join(c.describe() for c in undone)
                )
            for change, why in stuck:
                warn(
                    "cognito_fdw: the transaction was rolled back after its COMMIT had sent "
                    f"changes to Cognito; NOT undone there, still applied: {change.describe()} "
                    f"(the undo failed: {_one_line(why)})"
                )
        except Exception:  # noqa: BLE001 - the abort path: nothing may escape
            pass
        finally:
            self.clear()

    def _forget_wishes(self) -> None:
        for log, _ in self._tables.values():
            log.clear()
        self._tables.clear()
        self._savepoints.clear()

    def clear(self) -> None:
        """The transaction ended (committed, or nothing was sent): forget every table's
        changes, savepoints and what was sent."""
        self._forget_wishes()
        self._sent = []


# The backend's open transaction (a backend runs one at a time).
transaction = Transaction()


def apply(
    steps: list[tuple[Change, Send]], undoing: Undoing = contextlib.nullcontext
) -> list[tuple[Change, Send]]:
    """Send each change with its sender, in order; on a failure undo those sent, then raise.
    The steps that changed something in Cognito (for an undo later).

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
            raise _failed(change, exc, done, _undo(done, undoing)) from None
        if changed:
            done.append((change, send))
    return done


def _one_line(text: str) -> str:
    """A message from Cognito (or about it) on one line, for a WARNING or an error: its
    whitespace collapsed, any other character that is not printable (an ANSI escape an
    endpoint's answer held) escaped as the wrapper's errors are (errors.one_line)."""
    return one_line(" ".join(str(text).split()))


def _undo(done: list[tuple[Change, Send]], undoing: Undoing) -> list[tuple[Change, str]]:
    stuck = []
    with undoing():
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
