"""The adapter for groups and group_members: dispatch, refusals, transaction hooks."""

from collections import OrderedDict

import pytest
from multicorn.utils import MulticornException

from cognito_fdw import changes
from cognito_fdw.fdw import CognitoFdw
from cognito_fdw.groups import Groups
from cognito_fdw.members import Members
from cognito_fdw.table import OBJECTS, table_class
from cognito_fdw.users import Users

from .test_columns import Col

BASE = {
    "user_pool_id": "us-east-1_Test123",
    "aws_access_key_id": "AKIDTEST",
    "aws_secret_access_key": "secret",
    "endpoint_url": "http://127.0.0.1:9",
}
MEMBER_COLUMNS = OrderedDict(
    (name, Col(name, "text")) for name in ("group_name", "username", "membership")
)


def wrapper(columns=MEMBER_COLUMNS, **options):
    return CognitoFdw({**BASE, **options}, columns)


def test_the_object_option_picks_the_table():
    users_table = OrderedDict(username=Col("username", "text"))
    assert type(wrapper(users_table, object="users")._table()) is Users
    assert type(wrapper(object="group_members")._table()) is Members
    groups_table = OrderedDict(group_name=Col("group_name", "text"))
    assert type(wrapper(groups_table, object="groups")._table()) is Groups


def test_every_object_has_a_table_of_that_name():
    assert [table_class(name).object for name in OBJECTS] == list(OBJECTS)


@pytest.mark.parametrize(
    "options, columns, message",
    [
        (
            {"object": "groups"},
            OrderedDict(group_name=Col("group_name", "text")),
            "'groups' is read-only",
        ),
        ({"object": "group_members"}, MEMBER_COLUMNS, "set the table option writable 'true'"),
        (
            {"object": "group_members", "writable": "true"},
            OrderedDict(group_name=Col("group_name", "text"), username=Col("username", "text")),
            "writable group_members needs the column membership",
        ),
        ({"object": "group_members", "writable": "maybe"}, MEMBER_COLUMNS, "option writable"),
    ],
)
def test_writes_are_refused_with_a_reason(options, columns, message):
    with pytest.raises(MulticornException) as caught:
        wrapper(columns, **options).rowid_column  # noqa: B018 - Multicorn reads the property
    assert message in caught.value.message


def test_changes_wait_for_commit_and_rollback_forgets_them():
    table = wrapper(object="group_members", writable="true")
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
    table = wrapper(object="group_members", writable="true")
    with pytest.raises(MulticornException, match="UPDATE is not supported"):
        table.update('["admins", "alice"]', {})
