"""Eight sessions scanning and looking up at once, then repeated full scans in one backend:
every answer exact, no error, no crash, memory flat."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import psycopg
import pytest

from ..support.postgres import create_table
from ..support.reliability import record

SESSIONS = 8
SECONDS = float(os.environ.get("COGNITO_FDW_LOAD_SECONDS", "60"))


@pytest.fixture(scope="module")
def load_table(setup):
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        columns = "username text, email text, sub text, enabled boolean"
        create_table(conn, "load_users", columns, object="users")
    return setup


def _queries(pool):
    users = sorted(pool.users, key=lambda u: u["Username"])
    emails = {
        u["Username"]: a["Value"] for u in users for a in u["Attributes"] if a["Name"] == "email"
    }
    disabled = sum(1 for u in users if not u["Enabled"])
    some = users[:: len(users) // 10]
    queries = [
        ("SELECT count(*) FROM load_users", [(len(users),)]),
        ("SELECT count(*) FROM load_users WHERE NOT enabled", [(disabled,)]),
        ("SELECT count(*) FROM (SELECT username FROM load_users LIMIT 10) s", [(10,)]),
    ]
    for user in some:
        name = user["Username"]
        queries.append(
            (f"SELECT username, email FROM load_users WHERE username = '{name}'",
             [(name, emails.get(name))])
        )  # fmt: skip
    return queries


def test_eight_sessions_for_a_while_every_answer_exact(load_table, pool):
    queries = _queries(pool)
    deadline = time.monotonic() + SECONDS
    results, failures = [], []

    def session(seed: int):
        rng = random.Random(seed)
        done = 0
        try:
            with psycopg.connect(load_table.dsn, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    sql, expected = rng.choice(queries)
                    got = conn.execute(sql).fetchall()
                    if got != expected:
                        failures.append((sql, got, expected))
                    done += 1
        except psycopg.Error as exc:
            failures.append(("error", str(exc), None))
        results.append(done)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(results)
    record("load", f"{SESSIONS} sessions for {SECONDS:.0f} s, scans and lookups",
           f"{total} queries, {len(failures)} wrong or failed")  # fmt: skip
    assert not failures, failures[:3]
    assert len(results) == SESSIONS and min(results) > 0


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_backend_memory_is_flat_across_repeated_full_scans(load_table, db, pool):
    pid = db.info.backend_pid
    if not Path(f"/proc/{pid}").exists():
        pytest.skip("the server runs elsewhere (container): its memory can't be read here")
    for _ in range(10):  # warm up: imports, client, caches
        db.execute("SELECT * FROM load_users").fetchall()
    before = _rss_kb(pid)
    for _ in range(40):
        assert len(db.execute("SELECT * FROM load_users").fetchall()) == len(pool.users)
    growth = _rss_kb(pid) - before
    record("load", "40 more full scans in one backend", f"VmRSS grew by {growth} kB")
    assert growth < 4096, f"backend grew by {growth} kB over 40 full scans"
