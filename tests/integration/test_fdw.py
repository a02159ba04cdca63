"""Tier 2: the adapter's scans live as long as Multicorn pulls from them.

Multicorn keeps one wrapper instance per table (docs/multicorn.md M3: one instance per backend and
table), so two scans of one table can be open at once: both sides of a self-join, a cursor and
another statement.  Each must return every row; the scans a failed statement leaves open are closed
at the (sub)transaction's rollback, without touching a cursor opened before the savepoint.
"""

from __future__ import annotations

import psycopg
import pytest

from ..support.postgres import create_table

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def lifetime_table(setup):
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_table(conn, "cognito.lifetime", "username text, email text", object="users")
    return setup


def test_a_self_join_reads_both_sides_whole(lifetime_table, db, pool):
    emails = [a["Value"] for u in pool.users for a in u["Attributes"] if a["Name"] == "email"]
    with db.transaction():
        for setting in ("enable_hashjoin", "enable_mergejoin"):
            db.execute(f"SET LOCAL {setting} = off")  # a nested loop: both scans open at once
        got = db.execute(
            "SELECT count(*) FROM cognito.lifetime a JOIN cognito.lifetime b ON a.email = b.email"
        ).fetchone()
    assert got == (len(emails),) and len(emails) > 100


def test_a_cursor_survives_another_scan_of_its_table(lifetime_table, db, pool):
    with db.transaction():
        db.execute("DECLARE c CURSOR FOR SELECT username FROM cognito.lifetime")
        first = db.execute("FETCH 10 FROM c").fetchall()
        assert db.execute("SELECT count(*) FROM cognito.lifetime").fetchone() == (150,)
        rest = db.execute("FETCH ALL FROM c").fetchall()
    assert sorted(first + rest) == sorted((u["Username"],) for u in pool.users)


def test_a_cursor_survives_a_failed_statement_rolled_back_to_a_savepoint(lifetime_table, db, pool):
    with db.transaction():
        db.execute("DECLARE c CURSOR FOR SELECT username FROM cognito.lifetime")
        first = db.execute("FETCH 10 FROM c").fetchall()
        db.execute("SAVEPOINT s")
        with pytest.raises(psycopg.errors.DivisionByZero):
            db.execute("SELECT 1 / (length(username) - 7) FROM cognito.lifetime")
        db.execute("ROLLBACK TO SAVEPOINT s")
        rest = db.execute("FETCH ALL FROM c").fetchall()
    assert sorted(first + rest) == sorted((u["Username"],) for u in pool.users)
    assert db.execute("SELECT count(*) FROM cognito.lifetime").fetchone() == (150,)
