"""Tier 2: one request-rate budget for every backend of the server, counted at the emulator."""

from __future__ import annotations

import math
import os
import re
import stat
import threading
import time

import psycopg
import pytest

from ..support.pool import POOL_REGION
from ..support.postgres import create_server, new_role, role_dsn
from ..support.reliability import record

pytestmark = pytest.mark.server

SESSIONS = 8
CAP = 4  # low enough that eight sessions' demand always exceeds it, even on a slow machine


@pytest.fixture(scope="module")
def capped(setup, pool, proxy):
    """A table on its own endpoint (so its own budget) at CAP requests per second."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(
            conn, "quota_server", pool.pool_id, proxy.url, region=POOL_REGION,
            max_requests_per_second=CAP,
        )  # fmt: skip
        conn.execute(
            "CREATE FOREIGN TABLE cognito.quota_users (username text, email text) "
            "SERVER quota_server OPTIONS (object 'users')"
        )
    return pool


def scan_at_once(dsn: str, sessions: int, sql: str) -> tuple[float, list]:
    """Run ``sql`` in ``sessions`` connections started together: when, and each one's rows."""
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(sessions)]
    for conn in conns:  # the wrapper loaded: only the scans themselves are timed
        conn.execute("SELECT count(*) FROM cognito.quota_users WHERE username = 'warm-up'")
    time.sleep(1.0)  # the warm-ups' slots leave the budget's window
    results: list = [None] * sessions
    barrier = threading.Barrier(sessions)

    def scan(i):
        barrier.wait()
        try:
            results[i] = conns[i].execute(sql).fetchall()
        except psycopg.Error as exc:
            results[i] = exc

    threads = [threading.Thread(target=scan, args=(i,)) for i in range(sessions)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for conn in conns:
        conn.close()
    return started, results


def test_eight_sessions_scanning_at_once_share_one_budget(setup, capped, proxy):
    started, results = scan_at_once(setup.dsn, SESSIONS, "SELECT count(*) FROM cognito.quota_users")
    assert results == [[(len(capped.users),)]] * SESSIONS
    arrivals = proxy.arrived("ListUsers", started)
    assert len(arrivals) == SESSIONS * math.ceil(len(capped.users) / 60)
    peak = proxy.peak("ListUsers", started)
    # Each backend on its own budget would send its three pages at once: 24 in a second.
    assert peak <= CAP
    # The budget was the limit, and the whole of it was used.
    assert peak == CAP
    record(
        "load",
        f"{SESSIONS} sessions scanning at once, max_requests_per_second {CAP}",
        f"at most {peak} ListUsers requests in any second at the emulator, "
        f"{len(arrivals)} in {arrivals[-1] - arrivals[0]:.1f} s",
    )
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - CAP) / CAP - 0.1


def test_the_budget_lives_in_a_private_directory_of_the_data_directory(setup, capped):
    data = str(getattr(setup, "data", "")) or None
    if data is None:
        pytest.skip("the server's data directory is in a container")
    directory = os.path.join(data, "cognito_fdw_quota")
    info = os.lstat(directory)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    files = os.listdir(directory)
    windows = [name for name in files if name.endswith(".window")]
    # Beside the windows, the shared state (cognito_fdw/shared.py): SQLite's file, its WAL.
    assert windows and set(files) - set(windows) <= {
        "state.sqlite3",
        "state.sqlite3-wal",
        "state.sqlite3-shm",
    }
    assert not any("AKID" in name for name in files)  # the key id is hashed
    for name in files:
        assert stat.S_IMODE(os.lstat(os.path.join(directory, name)).st_mode) == 0o600
    for name in windows:
        assert os.path.getsize(os.path.join(directory, name)) <= 28 + 8 * 1000


def test_an_unsafe_budget_directory_is_a_clear_error(setup, capped):
    data = str(getattr(setup, "data", "")) or None
    if data is None:
        pytest.skip("the server's data directory is in a container")
    directory = os.path.join(data, "cognito_fdw_quota")
    os.chmod(directory, 0o777)
    try:
        # A new session: the budget's directory is checked once per backend.
        with (
            psycopg.connect(setup.dsn, autocommit=True) as conn,
            pytest.raises(psycopg.Error) as err,
        ):
            conn.execute("SELECT count(*) FROM cognito.quota_users")
    finally:
        os.chmod(directory, 0o700)
    assert "mode 0777, not 0700" in err.value.diag.message_primary
    assert data not in err.value.diag.message_primary
    assert "remove it" in err.value.diag.message_hint


WAITED = re.compile(r"(\d+) ms waiting for the request-rate cap")


def test_another_accounts_keys_do_not_wait_behind_a_saturated_budget(setup, capped, proxy):
    """Four sessions keep the PUBLIC mapping's budget (CAP a second) saturated; a role
    signing with another account's key id looks a user up meanwhile.  By the wrapper's own
    accounting it waited nothing for the cap, while the saturating sessions waited, and its
    request reached Cognito before theirs were all sent."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        role = new_role(conn)
        conn.execute(
            f"CREATE USER MAPPING FOR {role} SERVER quota_server OPTIONS "
            "(aws_access_key_id 'AKIDOTHERACCOUNT', aws_secret_access_key 'other-secret')"
        )
        conn.execute(f"GRANT USAGE ON SCHEMA cognito TO {role}")
        conn.execute(f"GRANT SELECT ON cognito.quota_users TO {role}")
    name = capped.users[9]["Username"]
    with psycopg.connect(role_dsn(setup.dsn, role), autocommit=True) as other:
        other.execute("SELECT count(*) FROM cognito.quota_users WHERE username = 'warm-up'")
        time.sleep(1.0)
        waits: list = []
        saturating = threading.Thread(
            target=lambda: waits.extend(
                scan_at_once(
                    setup.dsn, 4, "EXPLAIN ANALYZE SELECT count(*) FROM cognito.quota_users"
                )[1]
            )
        )
        saturating.start()
        time.sleep(2.0)  # the four sessions' twelve requests need three seconds at CAP 4
        mine = [
            row[0]
            for row in other.execute(
                f"EXPLAIN ANALYZE SELECT * FROM cognito.quota_users WHERE username = '{name}'"
            )
        ]
        looked_up = time.monotonic()
        saturating.join(60)
    assert [int(m.group(1)) for line in mine if (m := WAITED.search(line))] == [0]
    theirs = [int(m.group(1)) for rows in waits for (line,) in rows if (m := WAITED.search(line))]
    assert len(theirs) == 4 and sum(theirs) > 1000  # the budget was saturated
    assert proxy.arrived("ListUsers")[-1] > looked_up  # theirs were still being sent
