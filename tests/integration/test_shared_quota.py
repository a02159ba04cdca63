"""Tier 2: one request-rate budget for every backend of the server, counted at the emulator."""

from __future__ import annotations

import math
import os
import stat
import threading
import time

import psycopg
import pytest

from .conftest import create_server, record
from .faultproxy import FaultProxy
from .seeddata import POOL_REGION

pytestmark = pytest.mark.server

SESSIONS = 8
CAP = 4  # low enough that eight sessions' demand always exceeds it, even on a slow machine


@pytest.fixture(scope="module")
def proxy(setup):
    proxy = FaultProxy(setup.endpoint).start()
    yield proxy
    proxy.stop()


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
    assert files and all(name.endswith(".window") for name in files)
    assert not any("AKID" in name for name in files)  # the key id is hashed
    for name in files:
        assert stat.S_IMODE(os.lstat(os.path.join(directory, name)).st_mode) == 0o600
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
