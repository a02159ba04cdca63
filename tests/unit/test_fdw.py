"""The Multicorn adapter: every failure leaves as one ERROR with a hint, secrets scrubbed;
the object option picks the table; writes refused with a reason, or held for COMMIT."""

import pytest
from multicorn.utils import MulticornException

from cognito_fdw import backend, changes
from cognito_fdw.fdw import CognitoFdw
from cognito_fdw.groups import Groups
from cognito_fdw.members import Members
from cognito_fdw.table import OBJECTS, table_class
from cognito_fdw.users import Users

from ..support.multicorn import column_definitions

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BASE = {
    "user_pool_id": "us-east-1_Test123",
    "aws_access_key_id": "AKIDTEST",
    "aws_secret_access_key": SECRET,
    "endpoint_url": "http://127.0.0.1:9",  # a closed port: nothing leaves this machine
}
USER_COLUMNS = column_definitions(username="text")
GROUP_COLUMNS = column_definitions(group_name="text")
MEMBER_COLUMNS = column_definitions(group_name="text", username="text", membership="text")


def fdw(columns=USER_COLUMNS, **options):
    return CognitoFdw({**BASE, "object": "users", **options}, columns)


def test_option_errors_raise_like_multicorn_does_with_a_hint():
    with pytest.raises(MulticornException) as caught:
        fdw(regoin="x").get_rel_size([], {"username"})
    assert "regoin" in caught.value.message and "region" in caught.value.hint


def test_errors_while_paging_are_translated_and_scrubbed():
    # A closed port: the connection is refused at once; the message names the endpoint.
    wrapper = fdw(endpoint_url=f"http://127.0.0.1:9/{SECRET}", max_attempts="1")
    with pytest.raises(MulticornException) as caught:
        list(wrapper.execute([], {"username"}))
    err = caught.value
    assert "could not be reached" in err.message
    assert SECRET not in f"{err.message}{err.hint}{err.detail}"


def test_limit_zero_sends_nothing():
    wrapper = fdw()
    assert wrapper.can_limit(0, None)
    assert list(wrapper.execute([], {"username"}, limit=0)) == []


def test_an_internal_bug_is_one_clear_error(monkeypatch):
    wrapper = fdw()
    monkeypatch.setattr(wrapper, "_table", lambda: 1 / 0)
    with pytest.raises(MulticornException) as caught:
        wrapper.get_rel_size([], set())
    assert "internal error" in caught.value.message and "ZeroDivisionError" in caught.value.message


def test_scans_of_one_table_run_side_by_side_and_a_stale_one_is_closed(monkeypatch):
    # One instance serves every scan of its table: a self-join's two scans both stay open
    # (closing the other one lost rows); a scan left by a failed statement (Multicorn
    # never drops it) is closed by the first scan of a later transaction.
    transaction = [1]
    monkeypatch.setattr(backend, "transaction_started", lambda: transaction[0])
    wrapper = fdw()
    monkeypatch.setattr(wrapper, "_rows", lambda *args: (n for n in range(3)))
    outer = wrapper.execute([], {"username"})
    assert next(outer) == 0
    inner = wrapper.execute([], {"username"})
    assert list(inner) == [0, 1, 2] and list(outer) == [1, 2]
    stale = wrapper.execute([], {"username"})
    assert next(stale) == 0
    transaction[0] = 2
    fresh = wrapper.execute([], {"username"})
    assert list(stale) == [] and list(fresh) == [0, 1, 2]


# -- groups and group_members: dispatch, refusals, transaction hooks -------------------------


def members(**options):
    return fdw(MEMBER_COLUMNS, object="group_members", **options)


def test_the_object_option_picks_the_table():
    assert type(fdw()._table()) is Users
    assert type(members()._table()) is Members
    assert type(fdw(GROUP_COLUMNS, object="groups")._table()) is Groups


def test_every_object_has_a_table_of_that_name():
    assert [table_class(name).object for name in OBJECTS] == list(OBJECTS)


@pytest.mark.parametrize(
    "options, columns, message",
    [
        ({"object": "groups"}, GROUP_COLUMNS, "'groups' is read-only"),
        ({"object": "group_members"}, MEMBER_COLUMNS, "set the table option writable 'true'"),
        (
            {"object": "group_members", "writable": "true"},
            column_definitions(group_name="text", username="text"),
            "writable group_members needs the column membership",
        ),
        ({"object": "group_members", "writable": "maybe"}, MEMBER_COLUMNS, "option writable"),
    ],
)
def test_writes_are_refused_with_a_reason(options, columns, message):
    with pytest.raises(MulticornException) as caught:
        fdw(columns, **options).rowid_column  # noqa: B018 - Multicorn reads the property
    assert message in caught.value.message


def test_changes_wait_for_commit_and_rollback_forgets_them():
    table = members(writable="true")
    table.begin(0)
    assert table.rowid_column == "membership"
    returned = table.insert({"group_name": "admins", "username": "alice", "membership": None})
    assert returned["membership"] == '["admins", "alice"]'
    table.delete('["staff", "bob"]')
    assert changes.transaction
    table.rollback()
    assert not changes.transaction
    table.pre_commit()  # nothing pending: no request (the endpoint is closed)
    table.commit()


def test_update_is_refused():
    table = members(writable="true")
    with pytest.raises(MulticornException, match="UPDATE is not supported"):
        table.update('["admins", "alice"]', {})
