"""The Multicorn adapter: every failure leaves as one ERROR with a hint, secrets scrubbed;
the object option picks the table; writes refused with a reason, or held for COMMIT."""

from types import SimpleNamespace

import pytest
from multicorn.utils import MulticornException

from cognito_fdw import changes
from cognito_fdw.fdw import CognitoFdw
from cognito_fdw.pg import catalog
from cognito_fdw.tables.groups import Groups
from cognito_fdw.tables.members import Members
from cognito_fdw.tables.table import OBJECTS, table_class
from cognito_fdw.tables.users import Users

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


class CountingTable:
    """A table whose scans each send one ListUsers and yield three rows, recording closes."""

    def __init__(self):
        self.options = SimpleNamespace(
            max_requests_per_second=25, max_requests_per_statement=1000, region="r",
            max_scans_per_statement=10000,
            user_pool_id="p",
        )  # fmt: skip
        self.closed = 0

    def explain(self, quals, columns, limit=None, offset=None):
        return ["Cognito: the plan"]

    def rows(self, quals, columns, stats, limit=None, offset=None):
        stats.requests += 1
        stats.operations["ListUsers"] += 1
        try:
            yield from ({"username": str(i)} for i in range(3))
        finally:
            self.closed += 1

    def end_scan(self):
        pass


def lines_of(wrapper) -> list[str]:
    """What EXPLAIN shows: one item (one "Multicorn" property) holding every line."""
    (item,) = wrapper.explain([], set())
    return [line.strip() for line in item.split("\n")]


def counting_wrapper(monkeypatch):
    wrapper, table = fdw(), CountingTable()
    monkeypatch.setattr(wrapper, "_table", lambda: table)
    return wrapper, table


def test_explain_after_the_statements_scans_adds_what_they_sent(monkeypatch):
    wrapper, table = counting_wrapper(monkeypatch)
    assert lines_of(wrapper) == [
        "Cognito: the plan",
        "Cognito: at most 25 requests/s, shared by every connection to this account; at most "
        "1,000 per statement (max_requests_per_statement)",
    ]  # plain EXPLAIN: no scan began
    first = wrapper.execute([], set())
    next(first)
    del first  # a rescan: Multicorn drops the scan's iterator, which closes it
    assert table.closed == 1
    second = wrapper.execute([], set())
    next(second)  # EXPLAIN ANALYZE replaces this one's iterator without dropping it
    lines = lines_of(wrapper)  # EXPLAIN ANALYZE: after the scans
    assert lines[2:] == [
        "Cognito actual: 2 requests (ListUsers 2) in 2 scans of this table",
        "Cognito actual: 0 retries, 0 throttled, 0 ms in Cognito requests, "
        "0 ms waiting for the request-rate cap",
    ]
    assert table.closed == 2
    wrapper.end_scan()
    assert len(lines_of(wrapper)) == 2


def test_rollback_closes_the_scans_a_failed_statement_left_open(monkeypatch):
    wrapper, table = counting_wrapper(monkeypatch)
    wrapper.begin(False)
    outer = wrapper.execute([], set())  # a cursor's scan, at level 1
    next(outer)
    wrapper.sub_begin(2)
    failed = wrapper.execute([], set())  # a statement in the savepoint that failed
    next(failed)
    wrapper.sub_rollback(2)
    assert table.closed == 1 and next(outer) == {"username": "1"}  # the cursor lives on
    assert not any("actual" in line for line in lines_of(wrapper))
    wrapper.rollback()
    assert table.closed == 2


def refused_insert_hint(wrapper) -> str:
    with pytest.raises(MulticornException) as caught:
        wrapper.rowid_column  # noqa: B018 - Multicorn reads the property
    return caught.value.hint


def test_a_hint_names_the_table_the_backend_finds(monkeypatch):
    wrapper = fdw(object="group_members")
    monkeypatch.setattr(catalog, "foreign_table_name", lambda instance: 'app."Team members"')
    assert refused_insert_hint(wrapper).startswith(
        """ALTER FOREIGN TABLE app."Team members" OPTIONS (ADD writable 'true')"""
    )


def test_without_a_name_the_hint_keeps_the_old_wording():
    # Outside a backend no name is found.
    hint = refused_insert_hint(fdw(object="group_members"))
    assert hint.startswith("ALTER FOREIGN TABLE <table> OPTIONS (ADD writable 'true')")


def test_the_name_is_in_place_before_secrets_are_scrubbed():
    # A secret "table" is scrubbed from every text, the name's stand-in included: the
    # stand-in is replaced first, so none of it (a NUL would cut the C string) is left.
    hint = refused_insert_hint(fdw(object="group_members", aws_secret_access_key="table"))
    assert hint.startswith("ALTER FOREIGN TABLE <***> OPTIONS") and "\0" not in hint


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


def test_a_statements_cost_stays_one_sum_whatever_the_rescans(monkeypatch):
    # execute() kept a Stats per rescan until the statement ended.
    wrapper, table = counting_wrapper(monkeypatch)
    for _ in range(5000):
        scan = wrapper.execute([], set())
        next(scan)
        del scan  # a rescan: Multicorn drops the iterator
    assert wrapper._spent.scans == 5000 and not wrapper._spent.running
    assert wrapper._spent.done.requests == 5000
    assert "Cognito actual: 5000 requests (ListUsers 5000) in 5000 scans" in lines_of(wrapper)[2]
