"""Pending membership changes of one transaction, with savepoints: pure, no I/O.

Nothing reaches Cognito before COMMIT, so INSERT and DELETE on ``group_members`` only
record what the transaction wants: a (group, username) key is wanted present or absent.
The last wish for a key wins, which is what SQL gives: a row inserted then deleted is gone.

Alongside the wishes the log keeps what scans *saw* in Cognito (present or absent) during
the transaction.  At COMMIT a change is sent only where the wish differs from what Cognito
holds, so inserting an existing member or deleting a row inserted in the same transaction
sends nothing, and undoing a failed COMMIT never removes a membership that was there before.

Savepoints follow Multicorn's hooks (docs/multicorn.md M4): ``sub_begin(level)`` comes
when the table is first touched inside a savepoint, ``sub_rollback(level)`` when that
savepoint is rolled back, ``sub_commit(level)`` when it is released.  Only wishes are
rolled back; observations describe Cognito and stay true.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .errors import CognitoFdwError

Key = tuple  # (group_name, username)


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
        self._savepoints: list[tuple[int, dict[Key, bool]]] = []

    def __bool__(self) -> bool:
        return bool(self._wanted)

    def clear(self) -> None:
        """A transaction ended (COMMIT, ROLLBACK) or began: forget everything."""
        self._wanted.clear()
        self._seen.clear()
        self._savepoints.clear()

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

    # -- savepoints --------------------------------------------------------------------

    def sub_begin(self, level: int) -> None:
        self._savepoints.append((level, dict(self._wanted)))

    def sub_commit(self, level: int) -> None:
        # Releasing a savepoint keeps its changes in the enclosing one.
        self._savepoints = [(lvl, snap) for lvl, snap in self._savepoints if lvl < level]

    def sub_rollback(self, level: int) -> None:
        for index, (lvl, snapshot) in enumerate(self._savepoints):
            if lvl >= level:
                self._wanted = snapshot
                del self._savepoints[index:]
                return

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
