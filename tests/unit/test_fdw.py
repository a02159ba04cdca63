"""The Multicorn boundary: every failure leaves as one ERROR with a hint, secrets scrubbed."""

from collections import OrderedDict

import pytest
from multicorn.utils import MulticornException

from cognito_fdw import backend
from cognito_fdw.fdw import CognitoFdw

from .test_columns import Col

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def fdw(**options):
    base = {
        "user_pool_id": "us-east-1_Test123",
        "object": "users",
        "aws_access_key_id": "AKIDTEST",
        "aws_secret_access_key": SECRET,
    }
    columns = OrderedDict(username=Col("username", "text"))
    return CognitoFdw({**base, **options}, columns)


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
    wrapper = fdw(endpoint_url="http://127.0.0.1:9")
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
