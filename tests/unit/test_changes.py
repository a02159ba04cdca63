"""The pending-change log: last wish wins, savepoints, planning against Cognito's state."""

from __future__ import annotations

import pytest

from cognito_fdw.changes import Change, ChangeLog, apply
from cognito_fdw.errors import CognitoFdwError


def planned(log: ChangeLog) -> list[tuple]:
    return [(c.group_name, c.username, c.add) for c in log.plan()]


def test_insert_then_delete_of_an_absent_member_sends_nothing():
    log = ChangeLog()
    log.add("admins", "alice")
    log.observe(("admins", "alice"), False)
    log.remove("admins", "alice")
    assert planned(log) == []


def test_insert_then_delete_of_an_existing_member_removes_it():
    log = ChangeLog()
    log.add("admins", "alice")
    log.observe(("admins", "alice"), True)
    log.remove("admins", "alice")
    assert planned(log) == [("admins", "alice", False)]


def test_adding_an_existing_member_and_removing_a_non_member_send_nothing():
    log = ChangeLog()
    log.add("admins", "alice")
    log.remove("admins", "bob")
    log.observe_user("alice", {"admins"})
    log.observe_user("bob", {"staff"})
    assert planned(log) == []


def test_unknown_users_are_the_ones_no_scan_has_seen():
    log = ChangeLog()
    log.add("admins", "alice")
    log.add("staff", "alice")
    log.add("admins", "bob")
    log.observe(("admins", "bob"), False)
    assert log.unknown_users() == ["alice"]
    log.observe_user("alice", set())
    assert log.unknown_users() == []
    assert planned(log) == [
        ("admins", "alice", True),
        ("staff", "alice", True),
        ("admins", "bob", True),
    ]


def test_rollback_to_savepoint_drops_only_the_changes_since_it():
    # BEGIN; INSERT e; SAVEPOINT s1; INSERT f; ROLLBACK TO s1; INSERT g; COMMIT
    log = ChangeLog()
    log.add("g", "e")
    log.sub_begin(2)
    log.add("g", "f")
    log.sub_rollback(2)
    log.sub_begin(2)
    log.add("g", "g")
    log.sub_commit(2)
    for user in ("e", "f", "g"):
        log.observe_user(user, set())
    assert planned(log) == [("g", "e", True), ("g", "g", True)]


def test_nested_savepoints_release_into_the_enclosing_one():
    log = ChangeLog()
    log.sub_begin(2)
    log.add("g", "a")
    log.sub_begin(3)
    log.remove("g", "a")
    log.sub_commit(3)  # RELEASE s2: the removal now belongs to s1
    assert log.wanted(("g", "a")) is False
    log.sub_rollback(2)  # ROLLBACK TO s1 drops both
    assert not log
    assert log.wanted(("g", "a")) is None


def test_rollback_of_an_outer_savepoint_drops_inner_ones():
    log = ChangeLog()
    log.add("g", "keep")
    log.sub_begin(2)
    log.add("g", "a")
    log.sub_begin(3)
    log.add("g", "b")
    log.sub_rollback(2)
    assert log.pending_adds() == [("g", "keep")]
    log.sub_begin(2)  # the savepoint is re-established and touched again
    log.add("g", "c")
    log.sub_rollback(2)
    assert log.pending_adds() == [("g", "keep")]


def test_clear_forgets_wishes_observations_and_savepoints():
    log = ChangeLog()
    log.sub_begin(2)
    log.add("g", "a")
    log.observe(("g", "a"), True)
    log.clear()
    assert not log
    log.add("g", "a")
    assert log.unknown_users() == ["a"]
    log.sub_rollback(2)  # no savepoint left: nothing to restore
    assert log.pending_adds() == [("g", "a")]


class FakeCognito:
    """Memberships in a set; sends fail for the changes listed in ``fail``."""

    def __init__(self, members, fail=()):
        self.members = set(members)
        self.fail = set(fail)
        self.sent = []

    def send(self, change: Change):
        self.sent.append(change)
        if (change.key, change.add) in self.fail:
            raise CognitoFdwError("boom", hint="a hint", detail="AWS error code: X")
        if change.add == (change.key in self.members):
            return False
        (self.members.add if change.add else self.members.discard)(change.key)
        return True


def test_apply_sends_every_change_in_order():
    cognito = FakeCognito({("g", "old")})
    changes = [Change("g", "new", True), Change("g", "old", False)]
    apply([(c, cognito.send) for c in changes])
    assert cognito.members == {("g", "new")}
    assert cognito.sent == changes


def test_a_failing_change_undoes_the_applied_ones_and_names_the_failure():
    cognito = FakeCognito({("g", "old")}, fail={(("nope", "a"), True)})
    changes = [Change("g", "a", True), Change("g", "old", False), Change("nope", "a", True)]
    with pytest.raises(CognitoFdwError) as caught:
        apply([(c, cognito.send) for c in changes])
    assert cognito.members == {("g", "old")}
    error = caught.value
    assert error.message.startswith("cannot add user 'a' to group 'nope' at COMMIT: boom")
    assert "rolled back" in error.message
    assert "NOT undone" not in error.message
    assert "undone in Cognito: the 2 change(s)" in error.detail
    assert error.hint == "a hint"


def test_an_undo_that_fails_is_named_in_the_message():
    cognito = FakeCognito(
        set(), fail={(("nope", "a"), True), (("g", "a"), False)}
    )  # removing g/a again fails
    changes = [Change("g", "a", True), Change("g", "b", True), Change("nope", "a", True)]
    with pytest.raises(CognitoFdwError) as caught:
        apply([(c, cognito.send) for c in changes])
    assert "NOT undone in Cognito: add user 'a' to group 'g'" in caught.value.message
    assert cognito.members == {("g", "a")}


def test_a_change_that_changed_nothing_is_not_undone():
    # Removing g/x finds no member (gone meanwhile): undoing it must not add x back.
    cognito = FakeCognito(set(), fail={(("nope", "a"), True)})
    with pytest.raises(CognitoFdwError) as caught:
        apply([(c, cognito.send) for c in [Change("g", "x", False), Change("nope", "a", True)]])
    assert cognito.members == set()
    assert cognito.sent == [Change("g", "x", False), Change("nope", "a", True)]
    assert caught.value.detail == "AWS error code: X"
