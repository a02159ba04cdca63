"""Tier 2: the concurrent full scan of a large pool, inside a real backend."""

from __future__ import annotations

import math

import psycopg
import pytest

from cognito_fdw.pushdown import PARTITION_MIN_USERS
from cognito_fdw.tools.demousers import bulk_users
from cognito_fdw.tools.seed import create_users

from ..support.accounting import counting, requests_of
from ..support.pool import POOL_REGION
from ..support.postgres import create_server

pytestmark = pytest.mark.server

USERS = PARTITION_MIN_USERS  # the smallest pool the planner reads in parts


@pytest.fixture(scope="module")
def big(setup, cognito):
    pool_id = cognito.create_user_pool(PoolName="big")["UserPool"]["Id"]
    create_users(cognito, pool_id, bulk_users(USERS), threads=16)
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(conn, "big_server", pool_id, setup.endpoint, region=POOL_REGION)
        for name, extra in (("big", ""), ("big_slow", ", max_requests_per_second '2'")):
            conn.execute(
                f"CREATE FOREIGN TABLE cognito.{name} (username text, email text, sub text) "
                f"SERVER big_server OPTIONS (object 'users'{extra})"
            )
    return pool_id


def test_a_large_pool_is_read_in_sixteen_concurrent_parts(db, big):
    plan = "\n".join(r[0] for r in db.execute("EXPLAIN SELECT count(*) FROM cognito.big"))
    assert "ListUsers in 16 concurrent parts" in plan and "4 workers" in plan
    with counting(db):
        rows = db.execute("SELECT count(*), count(DISTINCT username) FROM cognito.big").fetchall()
        (requests,) = requests_of(db)
    assert rows == [(USERS, USERS)]
    # At most one short page more per part than a sequential scan.
    assert math.ceil(USERS / 60) <= requests <= math.ceil(USERS / 60) + 16


def test_an_early_end_stops_the_scan_and_the_backend_stays_healthy(db, big):
    rows = db.execute(
        "SELECT username FROM cognito.big WHERE email LIKE '%@example.com' LIMIT 5"
    ).fetchall()
    assert len(rows) == 5
    assert db.execute("SELECT count(*) FROM cognito.big").fetchone() == (USERS,)


def test_a_statement_timeout_cancels_the_scan_cleanly(db, big):
    db.execute("SET statement_timeout = '1s'")
    with pytest.raises(psycopg.Error, match="cancel"):
        db.execute("SELECT count(*) FROM cognito.big_slow")
    db.execute("RESET statement_timeout")
    assert db.execute("SELECT count(*) FROM cognito.big").fetchone() == (USERS,)
