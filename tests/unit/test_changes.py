"""The pending-change log and its transaction: last wish wins, savepoints, planning against
Cognito's state, one owner across tables."""

from __future__ import annotations

import pytest

from cognito_fdw.changes import Change, ChangeLog, Transaction, apply
from cognito_fdw.errors import CognitoFdwError


def planned(log: ChangeLog) -> list[tuple]:
    return [(c.group_name, c.username, c.add) for c in log.plan()]


def test_insert_then_delete_of_an_absent_member_sends_nothing():
    log = ChangeLog()
    log.add("admins", "alice")
    log.showed_pending(("admins", "alice"))  # the DELETE's scan showed the insert only
    log.remove("admins", "alice")
    # Another session added alice meanwhile: this transaction took back only its own row.
    log.observe_user("alice", {"admins"})
    assert planned(log) == [] and not log


def test_insert_then_delete_of_an_existing_member_removes_it():
    log = ChangeLog()
    log.add("admins", "alice")
    log.remove("admins", "alice")
    log.observe_user("alice", {"admins"})
    assert planned(log) == [("admins", "alice", False)]


def test_adding_an_existing_member_and_removing_a_non_member_send_nothing():
    log = ChangeLog()
    log.add("admins", "alice")
    log.remove("admins", "bob")
    log.observe_user("alice", {"admins"})
    log.observe_user("bob", {"staff"})
    assert planned(log) == []


def test_every_changed_user_is_read_at_commit_whatever_was_seen_before():
    log = ChangeLog()
    log.add("admins", "alice")
    log.add("staff", "alice")
    log.add("admins", "bob")
    assert log.users() == ["alice", "bob"]
    log.observe_user("bob", {"admins"})  # an earlier read...
    log.observe_user("bob", set())  # ...is replaced by the one at COMMIT
    log.observe_user("alice", set())
    assert planned(log) == [
        ("admins", "alice", True),
        ("staff", "alice", True),
        ("admins", "bob", True),
    ]


def joined(*logs: ChangeLog) -> Transaction:
    transaction = Transaction()
    for log in logs:
        transaction.join(log, lambda context, log=log: [])
    return transaction


def test_rollback_to_savepoint_drops_only_the_changes_since_it():
    # BEGIN; INSERT e; SAVEPOINT s1; INSERT f; ROLLBACK TO s1; INSERT g; COMMIT
    log = ChangeLog()
    transaction = joined(log)
    log.add("g", "e")
    transaction.sub_begin(2)
    log.add("g", "f")
    transaction.sub_rollback(2)
    transaction.sub_begin(2)
    log.add("g", "g")
    transaction.sub_commit(2)
    for user in ("e", "f", "g"):
        log.observe_user(user, set())
    assert planned(log) == [("g", "e", True), ("g", "g", True)]


def test_nested_savepoints_release_into_the_enclosing_one():
    log = ChangeLog()
    transaction = joined(log)
    transaction.sub_begin(2)
    log.add("g", "a")
    transaction.sub_begin(3)
    log.remove("g", "a")
    transaction.sub_commit(3)  # RELEASE s2: the removal now belongs to s1
    assert log.wanted(("g", "a")) is False
    transaction.sub_rollback(2)  # ROLLBACK TO s1 drops both
    assert not log and not transaction
    assert log.wanted(("g", "a")) is None


def test_rollback_of_an_outer_savepoint_drops_inner_ones():
    log = ChangeLog()
    transaction = joined(log)
    log.add("g", "keep")
    transaction.sub_begin(2)
    log.add("g", "a")
    transaction.sub_begin(3)
    log.add("g", "b")
    transaction.sub_rollback(2)
    assert log.pending_adds() == [("g", "keep")]
    transaction.sub_begin(2)  # the savepoint is re-established and touched again
    log.add("g", "c")
    transaction.sub_rollback(2)
    assert log.pending_adds() == [("g", "keep")]


def test_every_instance_hook_drives_one_snapshot_per_level():
    # Two tables (two wrapper instances) touched inside one savepoint: Multicorn calls
    # sub_begin(2) on each, the second after the first table changed; and a table whose
    # first change is inside the savepoint joins after the snapshot was taken.
    first, second = ChangeLog(), ChangeLog()
    transaction = joined(first)
    first.add("g", "before")
    transaction.sub_begin(2)
    first.add("g", "inside")
    transaction.sub_begin(2)  # the second instance's hook: the snapshot is not retaken
    transaction.join(second, lambda context: [])
    second.add("h", "inside")
    transaction.sub_rollback(2)
    transaction.sub_rollback(2)  # the second instance's hook: nothing left to restore
    assert first.pending_adds() == [("g", "before")]
    assert not second


def test_send_plans_every_table_with_the_context_then_forgets_them():
    first, second = ChangeLog(), ChangeLog()
    contexts, sent = [], []

    def planner(context):
        contexts.append(context)
        return [(Change("g", f"u{len(contexts)}", True), lambda c: sent.append(c) or True)]

    transaction = Transaction()
    for log in (first, second):
        log.add("g", "x")
        transaction.join(log, planner)
        transaction.join(log, planner)  # again: still one table
    transaction.sub_begin(2)
    transaction.send("stats")
    assert contexts == ["stats", "stats"]
    assert sent == [Change("g", "u1", True), Change("g", "u2", True)]
    assert not transaction and not first and not second
    transaction.sub_rollback(2)  # no savepoint left: nothing to restore
    assert not first


def test_a_failed_send_forgets_the_changes_too():
    log = ChangeLog()
    log.add("g", "a")
    transaction = Transaction()

    def fail(change):
        raise CognitoFdwError("boom")

    transaction.join(log, lambda context: [(Change("g", "a", True), fail)])
    with pytest.raises(CognitoFdwError, match="cannot add user 'a' to group 'g' at COMMIT"):
        transaction.send(None)
    assert not transaction and not log


def test_clear_forgets_wishes_observations_and_savepoints():
    log = ChangeLog()
    transaction = joined(log)
    transaction.sub_begin(2)
    log.add("g", "a")
    log.observe_user("a", {"g"})
    transaction.clear()
    assert not log
    log.add("g", "a")
    assert planned(log) == [("g", "a", True)]  # the observation went with the rest
    transaction.sub_rollback(2)  # no savepoint left (and the log has left): nothing to restore
    assert log.pending_adds() == [("g", "a")]


class FakeCognito:
    """Memberships in a set; sends fail for the changes listed in ``fail``."""

    def __init__(self, members, fail=()):
        self.members = set(members)
        self.fail = set(fail)
        self.sent = []
        self.reason = "boom"

    def send(self, change: Change):
        self.sent.append(change)
        if (change.key, change.add) in self.fail:
            raise CognitoFdwError(self.reason, hint="a hint", detail="AWS error code: X")
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


def sent_then_rolled_back(cognito: FakeCognito, changes: list[Change]) -> list[str]:
    """A transaction whose COMMIT sent ``changes``, then rolled back: the WARNINGs."""
    log = ChangeLog()
    transaction = Transaction()
    transaction.join(log, lambda context: [(c, cognito.send) for c in changes])
    log.add("g", "anyone")  # the transaction has something to send
    transaction.send(None)
    warnings: list[str] = []
    transaction.undo_sent(warnings.append)
    transaction.undo_sent(warnings.append)  # once per instance: the second finds nothing
    return warnings


def test_a_rollback_after_commit_sent_its_changes_undoes_them():
    cognito = FakeCognito({("g", "old")})
    warnings = sent_then_rolled_back(cognito, [Change("g", "a", True), Change("g", "old", False)])
    assert cognito.members == {("g", "old")}
    assert warnings == [
        "cognito_fdw: the transaction was rolled back after its COMMIT had sent 2 change(s) to "
        "Cognito; undone there: add user 'a' to group 'g', remove user 'old' from group 'g'"
    ]


def test_each_change_a_rollback_could_not_undo_is_a_warning_naming_group_and_user():
    cognito = FakeCognito(set(), fail={(("g", "a"), False)})
    warnings = sent_then_rolled_back(cognito, [Change("g", "a", True), Change("g", "b", True)])
    assert cognito.members == {("g", "a")}
    assert warnings[1] == (
        "cognito_fdw: the transaction was rolled back after its COMMIT had sent changes to "
        "Cognito; NOT undone there, still applied: add user 'a' to group 'g' (the undo failed: "
        "boom)"
    )
    assert "undone there: add user 'b' to group 'g'" in warnings[0]


def test_a_commit_forgets_what_was_sent():
    cognito = FakeCognito(set())
    log = ChangeLog()
    transaction = Transaction()
    transaction.join(log, lambda context: [(Change("g", "a", True), cognito.send)])
    log.add("g", "a")
    transaction.send(None)
    transaction.clear()  # commit()
    transaction.undo_sent(pytest.fail)
    assert cognito.members == {("g", "a")}


def test_why_an_undo_failed_reaches_its_warning_escaped_on_one_line():
    # The reason is an error from Cognito (or an endpoint): it may hold anything.
    cognito = FakeCognito(set(), fail={(("g", "a"), False)})
    cognito.reason = "boom\x1b[2K\nWARNING:  forged"
    warnings = sent_then_rolled_back(cognito, [Change("g", "a", True)])
    assert warnings[-1].endswith("(the undo failed: boom\\x1b[2K WARNING: forged)")
