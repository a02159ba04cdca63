"""Tier 2: sql/sync.sql on a pool large enough for parts of two pages, in a database of its own.

The sync in parts (CALL app.sync_users_in_parts), its resumption after a timeout, a failing
part retried, and app.user_for_sub; request counts from the wrapper's DEBUG lines.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from cognito_fdw.tools.demousers import bulk_users
from cognito_fdw.tools.seed import create_users

from ..support.accounting import collect_notices, counting, requests_of
from ..support.postgres import SCRIPTS, Database, create_server, psql
from ..support.proxy import Fault, Proxy

pytestmark = pytest.mark.server

USERS = 1200  # about 75 users a part: most parts take two ListUsers pages
PARTS = "0123456789abcdef"
SYNC_SQL = SCRIPTS / "sync.sql"
DATABASE = "sync_parts"  # app.* is per database: test_sync.py has its own in the main one


def cognito_users(cognito, pool_id) -> dict[str, tuple]:
    """sub -> (username, email, phone) as Cognito lists them."""
    found = {}
    for page in cognito.get_paginator("list_users").paginate(UserPoolId=pool_id):
        for user in page["Users"]:
            attrs = {a["Name"]: a["Value"] for a in user["Attributes"]}
            found[attrs["sub"]] = (user["Username"], attrs.get("email"), attrs.get("phone_number"))
    return found


@pytest.fixture(scope="module")
def parts_pool(setup, cognito):
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-sync-parts")["UserPool"]["Id"]
    create_users(cognito, pool_id, bulk_users(USERS), threads=16)
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    target = Database(setup, DATABASE)
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION multicorn")
        create_server(conn, "parts_server", pool_id, setup.endpoint)
        conn.execute("CREATE SCHEMA cognito")
        conn.execute("IMPORT FOREIGN SCHEMA cognito FROM SERVER parts_server INTO cognito")
    loaded = psql(target, "-f", str(SYNC_SQL))
    assert loaded.returncode == 0, loaded.stderr
    target.pool_id = pool_id
    return target


@pytest.fixture
def pdb(parts_pool):
    """A connection to the test database, starting from an empty app.users and no rounds."""
    with psycopg.connect(parts_pool.dsn, autocommit=True) as conn:
        collect_notices(conn)
        conn.execute("TRUNCATE app.users CASCADE")
        conn.execute(
            "UPDATE app.sync_parts SET round = 0, synced_at = NULL, seconds = NULL, "
            "users = NULL, inserted = NULL, updated = NULL, missing_in_cognito = NULL, "
            "failures = 0, failed_at = NULL, error = NULL"
        )
        yield conn
        conn.execute("DROP TRIGGER IF EXISTS inject ON app.users")


def pages_per_part(expected) -> list[int]:
    sizes = Counter(sub[0] for sub in expected)
    return [math.ceil(sizes[p] / 60) or 1 for p in PARTS]  # an empty part is one empty page


def app_users(conn) -> dict[str, tuple]:
    rows = conn.execute("SELECT sub::text, username, email::text, phone FROM app.users")
    return {r[0]: tuple(r[1:]) for r in rows}


def parts(conn) -> dict[str, tuple]:
    rows = conn.execute("SELECT part, round, users, synced_at, failures, error FROM app.sync_parts")
    return {r[0]: r[1:] for r in rows}


def inject(conn, part: str, body: str) -> None:
    """A trigger that runs ``body`` when a row of ``part`` is inserted into app.users."""
    conn.execute(
        "CREATE OR REPLACE FUNCTION pg_temp.inject() RETURNS trigger LANGUAGE plpgsql "
        f"AS $$ BEGIN {body}; RETURN NEW; END $$"
    )
    conn.execute(
        f"CREATE TRIGGER inject BEFORE INSERT ON app.users FOR EACH ROW "
        f"WHEN (NEW.sub::text LIKE '{part}%') EXECUTE FUNCTION pg_temp.inject()"
    )


def test_a_part_is_one_pushed_prefix_scan(pdb):
    plan = "\n".join(
        r[0] for r in pdb.execute("EXPLAIN SELECT * FROM app.cognito_users WHERE sub LIKE '7%'")
    )
    assert 'ListUsers Filter: sub ^= "7"' in plan
    assert "pushed down: sub LIKE '7%'" in plan
    # The imported table's sub is pushed too (text, or a uuid constant).
    plan = "\n".join(
        r[0]
        for r in pdb.execute(
            "EXPLAIN SELECT * FROM cognito.users WHERE sub = '7a000000-0000-0000-0000-000000000000'"
        )
    )
    assert 'Filter: sub = "7a000000-0000-0000-0000-000000000000"' in plan
    plan = "\n".join(
        r[0] for r in pdb.execute("EXPLAIN SELECT * FROM app.cognito_users WHERE sub = 'x-y'")
    )
    assert 'ListUsers Filter: sub = "x-y"' in plan


def test_the_sync_in_parts_equals_the_one_shot_sync(pdb, parts_pool, cognito):
    expected = cognito_users(cognito, parts_pool.pool_id)
    assert len(expected) == USERS
    with counting(pdb):
        pdb.execute("CALL app.sync_users_in_parts()")
        notices = list(pdb.notices)
        assert requests_of(pdb) == pages_per_part(expected)  # one scan a part, in order
    by_parts = app_users(pdb)
    assert by_parts == expected
    sizes = Counter(sub[0] for sub in expected)
    state = parts(pdb)
    assert {p: (s[0], s[1], s[3], s[4]) for p, s in state.items()} == {
        p: (1, sizes[p], 0, None) for p in PARTS
    }
    assert "app.sync_users_in_parts: round 1: 16 parts synced, 0 failed, 0 left" in notices
    # A sign of life per part: which part, how many users, where the call stands.
    progress = [
        m.groups()
        for n in notices
        if (m := re.fullmatch(
            r"app.sync_users_in_parts: round 1, part (\w) synced, (\d+) users: [\d.]+ s; "
            r"(\d+) parts done this call, (\d+) left in the round", n
        ))
    ]  # fmt: skip
    assert progress == [(p, str(sizes[p]), str(i + 1), str(15 - i)) for i, p in enumerate(PARTS)]

    pdb.execute("TRUNCATE app.users CASCADE")
    assert pdb.execute("SELECT * FROM app.sync_users()").fetchone() == (USERS, 0, 0, 0)
    assert app_users(pdb) == by_parts

    # The next call is a new round; nothing changed.  A user deleted in Cognito stays in
    # app.users, counted as missing in its part (as app.sync_users() counts it).
    gone = next(sub for sub in expected if sub[0] == "3")
    cognito.admin_delete_user(UserPoolId=parts_pool.pool_id, Username=expected[gone][0])
    pdb.execute("CALL app.sync_users_in_parts()")
    got = pdb.execute(
        "SELECT part, round, users, inserted, updated, missing_in_cognito FROM app.sync_parts"
    ).fetchall()
    assert sorted(got) == [(p, 2, sizes[p] - (p == "3"), 0, 0, int(p == "3")) for p in PARTS]
    assert gone in app_users(pdb)
    assert pdb.execute("SELECT * FROM app.sync_users()").fetchone() == (0, 0, USERS - 1, 1)


def test_max_parts_spreads_a_round_over_calls(pdb, parts_pool, cognito):
    expected = cognito_users(cognito, parts_pool.pool_id)
    pages = pages_per_part(expected)
    with counting(pdb):
        for first in range(0, 16, 5):
            pdb.execute("CALL app.sync_users_in_parts(5)")
            assert requests_of(pdb) == pages[first : first + 5]
        pdb.execute("CALL app.sync_users_in_parts(5)")  # the round is done: a new one starts
        assert requests_of(pdb) == pages[:5]
    assert [s[0] for p, s in sorted(parts(pdb).items())] == [2] * 5 + [1] * 11
    assert app_users(pdb) == expected


def test_the_sync_keeps_to_the_wrappers_request_cap(pdb, parts_pool, cognito):
    pages = pages_per_part(cognito_users(cognito, parts_pool.pool_id))
    rate = 3  # low enough that the cap, not the machine, sets the pace
    pdb.execute(
        f"ALTER FOREIGN TABLE app.cognito_users OPTIONS (ADD max_requests_per_second '{rate}')"
    )
    try:
        started = time.monotonic()
        with counting(pdb):
            pdb.execute("CALL app.sync_users_in_parts()")
            assert requests_of(pdb) == pages
        elapsed = time.monotonic() - started
    finally:
        pdb.execute("ALTER FOREIGN TABLE app.cognito_users OPTIONS (DROP max_requests_per_second)")
    # At most `rate` requests start within any one second, across the parts' scans (the
    # limiter is the backend's, not a scan's): n requests take at least (n - rate) / rate s.
    assert elapsed >= (sum(pages) - rate) / rate


def test_an_interrupted_sync_resumes_where_it_stopped(pdb, parts_pool, cognito):
    expected = cognito_users(cognito, parts_pool.pool_id)
    pages = pages_per_part(expected)
    inject(pdb, "6", "PERFORM pg_sleep(60)")  # part 6 outlasts the statement_timeout
    pdb.execute("SET statement_timeout = '5s'")
    # PostgreSQL's own cancel, or the wrapper's if the timeout came while it waited for Cognito.
    with counting(pdb), pytest.raises(psycopg.Error, match="canceling statement"):
        pdb.execute("CALL app.sync_users_in_parts()")
    pdb.execute("RESET statement_timeout")
    pdb.execute("DROP TRIGGER inject ON app.users")
    before = parts(pdb)
    done = [p for p in PARTS if before[p][0] == 1]
    assert done == list(PARTS[: len(done)]) and len(done) <= 6  # committed, in order
    assert all(sub[0] in done for sub in app_users(pdb))  # part 6 was rolled back

    with counting(pdb):
        pdb.execute("CALL app.sync_users_in_parts()")
        # Only the parts not yet synced are read: none twice, none skipped.
        assert requests_of(pdb) == pages[len(done) :]
    after = parts(pdb)
    assert all(after[p] == before[p] for p in done)  # not read again
    assert all(after[p][0] == 1 for p in PARTS)
    assert app_users(pdb) == expected


def test_a_timeout_while_waiting_for_cognito_ends_the_call_and_the_next_resumes(
    pdb, parts_pool, cognito, moto
):
    expected = cognito_users(cognito, parts_pool.pool_id)
    pages = pages_per_part(expected)
    proxy = Proxy(moto.url).start()
    # app.cognito_users follows the schema sync.sql is loaded with: here a server whose
    # requests pass through the proxy.
    pdb.execute("CREATE SCHEMA faulty")
    create_server(pdb, "faulty_server", parts_pool.pool_id, proxy.url)
    pdb.execute("IMPORT FOREIGN SCHEMA cognito FROM SERVER faulty_server INTO faulty")
    try:
        assert psql(parts_pool, "-v", "cognito_schema=faulty", "-f", str(SYNC_SQL)).returncode == 0
        # Parts 0 to 3 go through; every ListUsers after them stalls.
        proxy.arm(Fault("stall", "ListUsers", skip=sum(pages[:4]), times=-1, seconds=60))
        pdb.execute("SET statement_timeout = '8s'")  # parts 0 to 3 take about 1 s
        with pytest.raises(psycopg.Error, match="canceling statement"):
            pdb.execute("CALL app.sync_users_in_parts()")
        pdb.execute("RESET statement_timeout")
        assert [p for p, s in sorted(parts(pdb).items()) if s[0] == 1] == list("0123")
        assert parts(pdb)["4"][3:] == (0, None)  # a cancel, not a failure of part 4
        assert pdb.execute("SELECT 1").fetchone() == (1,)  # the session stays usable

        proxy.arm()
        with counting(pdb):
            pdb.execute("CALL app.sync_users_in_parts()")
            assert requests_of(pdb) == pages[4:]
        assert all(s[0] == 1 for s in parts(pdb).values())
        assert app_users(pdb) == expected
    finally:
        proxy.stop()
        restored = psql(parts_pool, "-f", str(SYNC_SQL))
        pdb.execute("DROP SERVER faulty_server CASCADE")
        pdb.execute("DROP SCHEMA faulty")
    assert restored.returncode == 0, restored.stderr


def test_a_failing_part_is_reported_and_retried_by_the_next_call(pdb, parts_pool, cognito):
    expected = cognito_users(cognito, parts_pool.pool_id)
    pages = pages_per_part(expected)
    inject(pdb, "a", "RAISE EXCEPTION 'injected failure'")
    with counting(pdb):
        pdb.execute("CALL app.sync_users_in_parts()")
        notices = list(pdb.notices)
        assert requests_of(pdb) == pages  # the other parts went on
    warning = "app.sync_users_in_parts: part a failed, to be retried by the next call: injected"
    assert any(n.startswith(warning) for n in notices)
    state = parts(pdb)
    assert state["a"][0] == 0 and state["a"][3:] == (1, "injected failure")
    assert all(state[p][0] == 1 for p in PARTS if p != "a")

    with counting(pdb):
        pdb.execute("CALL app.sync_users_in_parts()")  # still failing: only part a is read
        assert requests_of(pdb) == [pages[10]]
    assert parts(pdb)["a"][3:] == (2, "injected failure")

    pdb.execute("DROP TRIGGER inject ON app.users")
    with counting(pdb):
        pdb.execute("CALL app.sync_users_in_parts()")
        assert requests_of(pdb) == [pages[10]]
    assert parts(pdb)["a"][0] == 1 and parts(pdb)["a"][3:] == (0, None)
    assert app_users(pdb) == expected


def at_once(dsn: str, sessions: int, call) -> list[Exception]:
    """``call(conn)`` in ``sessions`` new sessions (notices kept, DEBUG1 on) that start it
    together; the errors raised."""
    barrier = threading.Barrier(sessions)
    errors = []

    def session():
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                collect_notices(conn)
                conn.execute("SET client_min_messages = debug1")
                barrier.wait()
                call(conn)
        except Exception as exc:  # noqa: BLE001 - returned to the test, which asserts none
            errors.append(exc)
            barrier.abort()  # the others stop waiting for this one

    threads = [threading.Thread(target=session) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_calls_at_the_same_time_share_the_parts(pdb, parts_pool, cognito):
    expected = cognito_users(cognito, parts_pool.pool_id)
    read, requests = [], []

    def call(conn):
        conn.execute("CALL app.sync_users_in_parts()")
        read.extend(n[len("app.sync_users (part ")] for n in conn.notices
                    if n.startswith("app.sync_users (part "))  # fmt: skip
        requests.append(sum(requests_of(conn)))

    assert at_once(parts_pool.dsn, 2, call) == []
    assert sorted(read) == list(PARTS)  # each part synced by one call or the other, once
    assert sum(requests) == sum(pages_per_part(expected))
    assert all(s[0] == 1 for s in parts(pdb).values())
    assert app_users(pdb) == expected


def test_bad_arguments_are_refused_clearly(pdb):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="part 'G' is not one hex"):
        pdb.execute("SELECT * FROM app.sync_users('G')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="max_parts must be 1"):
        pdb.execute("CALL app.sync_users_in_parts(0)")
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="sub is NULL"):
        pdb.execute("SELECT app.user_for_sub(NULL)")


def test_a_user_on_first_sight_costs_one_request_then_none(pdb, parts_pool, cognito):
    expected = cognito_users(cognito, parts_pool.pool_id)
    sub = sorted(expected)[USERS // 2]
    with counting(pdb):
        first = pdb.execute("SELECT sub::text, username, email::text, phone FROM "
                            "app.user_for_sub(%s)", (sub,)).fetchone()  # fmt: skip
        assert requests_of(pdb) == [1]
        again = pdb.execute("SELECT sub::text, username, email::text, phone FROM "
                            "app.user_for_sub(%s)", (sub,)).fetchone()  # fmt: skip
        assert requests_of(pdb) == []  # no scan at all
    assert first == again == (sub, *expected[sub])
    assert pdb.execute("SELECT count(*) FROM app.users").fetchone() == (1,)

    unknown = "00000000-0000-4000-8000-000000000000"
    with counting(pdb), pytest.raises(psycopg.errors.NoDataFound) as caught:
        pdb.execute("SELECT app.user_for_sub(%s)", (unknown,))
    assert f"no user with sub {unknown} in Cognito" in str(caught.value)
    assert caught.value.diag.message_hint.startswith("The token is from another user pool")
    assert requests_of(pdb) == [1]


def test_concurrent_first_calls_make_one_row_and_one_request(pdb, parts_pool, cognito):
    sub = sorted(cognito_users(cognito, parts_pool.pool_id))[7]
    callers = 6
    ids, requests = [], []

    def call(conn):
        ids.append(conn.execute("SELECT (app.user_for_sub(%s)).id", (sub,)).fetchone())
        requests.extend(requests_of(conn))

    assert at_once(parts_pool.dsn, callers, call) == []
    assert len(ids) == callers and len(set(ids)) == 1
    assert requests == [1]  # the others waited for the first and found its row
    assert pdb.execute("SELECT count(*) FROM app.users WHERE sub = %s", (sub,)).fetchone() == (1,)


def test_the_backend_memory_stays_flat_over_rounds(pdb):
    pid = pdb.info.backend_pid
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        pytest.skip("the server runs elsewhere (container): its memory can't be read here")

    def rss_kb() -> int:
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1])

    pdb.execute("CALL app.sync_users_in_parts()")  # warm up: imports, client, plans
    before = rss_kb()
    for _ in range(3):
        pdb.execute("CALL app.sync_users_in_parts()")
    growth = rss_kb() - before
    assert growth < 4096, f"backend grew by {growth} kB over 3 rounds"
