"""Faults injected between the wrapper and the emulator: answers stay exact, failures are
clear and bounded, cancels are prompt, and no backend breaks."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from ..support.accounting import counting, requests_of
from ..support.postgres import create_server, create_table
from ..support.proxy import Fault
from ..support.reliability import record

READ_TIMEOUT = 2


@pytest.fixture(scope="module")
def faulty(setup, pool, proxy):
    """fault_users reads the shared pool through the proxy."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(
            conn, "fault_srv", pool.pool_id, proxy.url,
            read_timeout=READ_TIMEOUT, connect_timeout=2, max_attempts=4,
        )  # fmt: skip
        conn.execute(
            "CREATE FOREIGN TABLE fault_users (username text, email text) "
            "SERVER fault_srv OPTIONS (object 'users')"
        )
        start = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    yield setup
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        # The postmaster never restarted (a backend crash restarts every session).
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == start


def expected(pool):
    return sorted((u["Username"],) for u in pool.users)


def scan(db):
    return db.execute("SELECT username FROM fault_users ORDER BY 1").fetchall()


def clear_error(db, sql=None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        db.execute(sql or "SELECT username FROM fault_users ORDER BY 1")
    err = caught.value
    text = f"{err.diag.message_primary} {err.diag.message_detail} {err.diag.message_hint}"
    assert "Error in python" not in text and "Traceback" not in text
    assert "testing-secret" not in text
    assert err.diag.message_hint
    return err


@pytest.mark.parametrize(
    "fault",
    [
        Fault("throttle", "ListUsers", skip=1, times=2),
        Fault("500", "ListUsers", skip=1, times=2),
        Fault("503", "ListUsers", skip=2, times=1),
        Fault("reset", "ListUsers", skip=1, times=1),
        Fault("truncate", "ListUsers", skip=1, times=1),
        Fault("slow", "ListUsers", times=-1, seconds=0.3),
    ],
    ids=lambda f: f.kind,
)
def test_transient_faults_mid_paging_give_the_exact_answer(faulty, db, pool, proxy, fault):
    proxy.arm(fault)
    with counting(db):
        assert scan(db) == expected(pool)
        assert requests_of(db) == [3]  # API calls; the retries are botocore's
    attempts = proxy.requests("ListUsers")
    record("fault", f"{fault.kind} mid-paging", f"exact answer: 150 rows from 3 API calls in "
           f"{len(attempts)} HTTP attempts")  # fmt: skip
    assert [r.fault for r in attempts if r.fault] == [fault.kind] * (
        len(attempts) - 3 if fault.kind != "slow" else 3
    )


def test_throttling_beyond_the_retries_is_a_clear_error(faulty, db, proxy):
    proxy.arm(Fault("throttle", "ListUsers", skip=1, times=-1))
    err = clear_error(db)
    record("fault", "throttled beyond max_attempts", err.diag.message_primary)
    assert "TooManyRequestsException" in err.diag.message_primary
    assert "request id: fault-TooManyRequestsException" in err.diag.message_detail
    assert "max_requests_per_second" in err.diag.message_hint
    assert len(proxy.requests("ListUsers")) == 1 + 4  # one good page, then max_attempts tries
    proxy.arm()
    assert db.execute("SELECT count(*) FROM fault_users").fetchone()[0] == 150


def test_a_repeated_pagination_token_is_reported_not_looped_on(faulty, db, proxy):
    proxy.arm(Fault("repeat_token", "ListUsers", skip=1, times=1))
    err = clear_error(db)
    record("fault", "repeated pagination token", err.diag.message_primary)
    assert "PaginationToken it had already returned" in err.diag.message_primary
    assert len(proxy.requests("ListUsers")) == 2


def test_a_stalled_endpoint_ends_in_a_clear_error_within_the_timeouts(faulty, db, proxy):
    proxy.arm(Fault("stall", "ListUsers", times=-1, seconds=60))
    db.execute("ALTER SERVER fault_srv OPTIONS (SET max_attempts '2')")
    try:
        started = time.monotonic()
        err = clear_error(db)
        elapsed = time.monotonic() - started
    finally:
        db.execute("ALTER SERVER fault_srv OPTIONS (SET max_attempts '4')")
    record("fault", "stalled endpoint, read_timeout 2 s, 2 attempts",
           f"{err.diag.message_primary} after {elapsed:.1f} s")  # fmt: skip
    assert "did not answer in time" in err.diag.message_primary
    assert "read_timeout" in err.diag.message_hint
    # Two attempts of READ_TIMEOUT each, plus botocore's backoff: bounded, not a hang.
    assert elapsed < 2 * READ_TIMEOUT + 10


def _cancel_after(dsn: str, pid: int, seconds: float) -> threading.Thread:
    def cancel():
        time.sleep(seconds)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SELECT pg_cancel_backend(%s)", (pid,))

    thread = threading.Thread(target=cancel)
    thread.start()
    return thread


def test_cancel_during_a_stalled_request_is_prompt_and_the_session_lives_on(faulty, db, proxy):
    proxy.arm(Fault("stall", "ListUsers", times=-1, seconds=60))
    db.execute("ALTER SERVER fault_srv OPTIONS (SET read_timeout '30')")
    try:
        canceller = _cancel_after(faulty.dsn, db.info.backend_pid, 1.0)
        started = time.monotonic()
        err = clear_error(db)
        elapsed = time.monotonic() - started
        canceller.join()
    finally:
        db.execute("ALTER SERVER fault_srv OPTIONS (SET read_timeout '2')")
    record(
        "cancel",
        "pg_cancel_backend during a stalled request (read_timeout 30 s)",
        f"returned {elapsed - 1.0:.2f} s after the cancel; next query in the session worked",
    )
    assert "cancel" in err.diag.message_primary
    assert elapsed < 1.0 + 2.0  # two seconds after the cancel, not the 30 s read timeout
    proxy.arm()
    assert scan(db)[:1] == [("user001",)]


def test_statement_timeout_during_slow_paging_is_prompt(faulty, db, proxy):
    proxy.arm(Fault("slow", "ListUsers", times=-1, seconds=1.5))
    db.execute("SET statement_timeout = '1s'")
    try:
        started = time.monotonic()
        with pytest.raises(psycopg.Error) as caught:
            scan(db)
        elapsed = time.monotonic() - started
    finally:
        db.execute("RESET statement_timeout")
    record(
        "cancel",
        "statement_timeout 1 s during slow paging (1.5 s a page)",
        f"returned after {elapsed:.2f} s; next query in the session worked",
    )
    assert "cancel" in str(caught.value) or "statement timeout" in str(caught.value)
    assert elapsed < 1.0 + 2.0 + READ_TIMEOUT
    proxy.arm()
    assert len(scan(db)) == 150


GROUP_SIZE = 70  # two ListUsersInGroup pages


@pytest.fixture(scope="module")
def fault_groups(faulty, cognito, pool):
    """Groups in the shared pool (groups don't change what users scans return)."""
    for group in ("fault_big", "fault_small"):
        cognito.create_group(UserPoolId=pool.pool_id, GroupName=group)
    for i in range(1, GROUP_SIZE + 1):
        cognito.admin_add_user_to_group(
            UserPoolId=pool.pool_id, GroupName="fault_big", Username=f"user{i:03d}"
        )
    with psycopg.connect(faulty.dsn, autocommit=True) as conn:
        columns = "group_name text, username text, membership text"
        create_table(
            conn, "fault_members", columns, "fault_srv", object="group_members", writable="true"
        )
    return faulty


def big_group(db):
    sql = "SELECT username FROM fault_members WHERE group_name = 'fault_big' ORDER BY 1"
    return db.execute(sql).fetchall()


@pytest.mark.parametrize(
    "fault",
    [
        Fault("throttle", "ListUsersInGroup", skip=1, times=2),
        Fault("reset", "ListUsersInGroup", skip=1, times=1),
        Fault("truncate", "ListUsersInGroup", skip=1, times=1),
        Fault("503", "ListUsersInGroup", skip=1, times=1),
    ],
    ids=lambda f: f.kind,
)
def test_group_members_paging_survives_transient_faults(fault_groups, db, proxy, fault):
    proxy.arm(fault)
    rows = big_group(db)
    record("fault", f"{fault.kind} mid-paging of group_members",
           f"exact answer: {len(rows)} members")  # fmt: skip
    assert rows == [(f"user{i:03d}",) for i in range(1, GROUP_SIZE + 1)]


def test_group_members_repeated_token_is_reported(fault_groups, db, proxy):
    proxy.arm(Fault("repeat_token", "ListUsersInGroup", skip=1, times=1))
    err = clear_error(db, "SELECT username FROM fault_members WHERE group_name = 'fault_big'")
    record("fault", "repeated NextToken in group_members", err.diag.message_primary)
    assert "NextToken it had already returned" in err.diag.message_primary


def test_a_commit_that_fails_midway_is_undone_and_named(fault_groups, db, proxy, cognito, pool):
    # The second add is throttled beyond every retry: the first must be taken back.
    proxy.arm(Fault("throttle", "AdminAddUserToGroup", skip=1, times=-1))
    db.execute("BEGIN")
    db.execute(
        "INSERT INTO fault_members (group_name, username) "
        "VALUES ('fault_small', 'user001'), ('fault_small', 'user002')"
    )
    err = clear_error(db, "COMMIT")
    record("fault", "throttled beyond retries while applying memberships at COMMIT",
           err.diag.message_primary)  # fmt: skip
    assert "fault_small" in err.diag.message_primary
    assert "user002" in err.diag.message_primary
    assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    proxy.arm()
    listed = cognito.list_users_in_group(UserPoolId=pool.pool_id, GroupName="fault_small")
    assert listed["Users"] == []  # user001's add was undone
