"""Tier 2: a database whose encoding cannot hold a user's name still answers every query
that does not read that name, and one that does fails with an error naming the column, the
user and the character (as PostgreSQL's own 22P05 does), never ``UnicodeEncodeError``.

Multicorn converts every key of a row dict and encodes each string with the database
encoding's codec; the wrapper now returns only the columns a query reads.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from cognito_fdw.tools.seed import create_users

from ..support.pool import new_user
from ..support.postgres import create_server, explain_text

pytestmark = pytest.mark.server

NAMES = {"ann": "Ann", "zoe": "Zoë", "kei": "例え"}  # Zoë fits LATIN1, 例え does not
ENCODINGS = ["LATIN1", "UTF8"]


@pytest.fixture(scope="module")
def encoded(setup, cognito):
    """A database per encoding, each with users (username text, name text) on a pool of
    three users; yields the databases' connection keyword sets by encoding."""
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-encodings")["UserPool"]["Id"]
    create_users(cognito, pool_id, (new_user(u, {"name": name}) for u, name in NAMES.items()))
    with psycopg.connect(setup.dsn, autocommit=True) as admin:
        for encoding in ENCODINGS:
            admin.execute(
                f"CREATE DATABASE enc_{encoding.lower()} ENCODING '{encoding}' "
                "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            )
            with psycopg.connect(
                setup.dsn, dbname=f"enc_{encoding.lower()}", autocommit=True
            ) as conn:
                conn.execute("CREATE EXTENSION multicorn")
                create_server(conn, "enc_server", pool_id, setup.endpoint)
                conn.execute(
                    "CREATE FOREIGN TABLE users (username text, name text) SERVER enc_server "
                    "OPTIONS (object 'users')"
                )
    yield
    with psycopg.connect(setup.dsn, autocommit=True) as admin:
        for encoding in ENCODINGS:
            admin.execute(f"DROP DATABASE enc_{encoding.lower()} WITH (FORCE)")


@pytest.fixture(params=ENCODINGS)
def enc(request, encoded, setup):
    dbname = f"enc_{request.param.lower()}"
    with psycopg.connect(setup.dsn, dbname=dbname, autocommit=True) as conn:
        conn.execute("SET client_encoding = 'UTF8'")
        assert conn.execute("SHOW server_encoding").fetchone()[0] == request.param
        yield request.param, conn


def test_count_and_other_columns_work_whatever_the_names_hold(enc):
    _, conn = enc
    assert conn.execute("SELECT count(username) FROM users").fetchone()[0] == 3
    rows = conn.execute("SELECT username FROM users ORDER BY 1").fetchall()
    assert rows == [("ann",), ("kei",), ("zoe",)]


def test_a_name_the_encoding_holds_is_returned(enc):
    _, conn = enc
    rows = conn.execute("SELECT name FROM users WHERE username IN ('ann', 'zoe') ORDER BY 1")
    assert rows.fetchall() == [("Ann",), ("Zoë",)]


def test_reading_a_name_the_encoding_cannot_hold(enc):
    encoding, conn = enc
    if encoding == "UTF8":
        assert conn.execute("SELECT name FROM users WHERE username = 'kei'").fetchone() == ("例え",)
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 3
        return
    # count(*) and a whole-row reference both arrive as "no column": every column is read.
    for sql in ("SELECT name FROM users", "SELECT u FROM users u", "SELECT count(*) FROM users"):
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(sql).fetchall()
        diag = caught.value.diag
        assert diag.message_primary == (
            "cognito_fdw: column name of user 'kei': character with byte sequence "
            '0xe4 0xbe 0x8b in encoding "UTF8" has no equivalent in encoding "LATIN1"'
        )
        assert "Leave name out of the query" in diag.message_hint
        assert "UnicodeEncodeError" not in str(caught.value)


def test_explain_of_every_shape_is_fine(enc, setup):
    _, conn = enc
    before = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    for sql in (
        "SELECT count(username) FROM users",
        "SELECT name FROM users",
        "SELECT name FROM users WHERE username = 'kei'",
    ):
        plan = explain_text(conn, "EXPLAIN " + sql)
        assert "Foreign Scan on users" in plan
    analyzed = conn.execute("EXPLAIN ANALYZE SELECT count(username) FROM users").fetchall()
    assert any("rows=3" in r[0] for r in analyzed)
    assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == before
    assert not re.search(r"terminated by signal|server process .* exited", setup.log())


def test_a_nul_from_cognito_is_shown_as_the_replacement_character(setup, cognito):
    # PostgreSQL text and jsonb cannot hold U+0000; before, one user's NUL
    # failed count(*) and SELECT * for everyone (jsonb refused \u0000) and cut text columns.
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-nul")["UserPool"]["Id"]
    odd = "a\x01b\x7fc\x00d"
    create_users(cognito, pool_id, [new_user("nul", {"name": odd}), new_user("ok", {})])
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(conn, "nul_server", pool_id, setup.endpoint)
        conn.execute(
            "CREATE FOREIGN TABLE cognito.nul_users (username text, name text, attributes "
            "jsonb, nickname varchar(20)) SERVER nul_server OPTIONS (object 'users')"
        )
        assert conn.execute("SELECT count(*) FROM cognito.nul_users").fetchone() == (2,)
        shown = odd.replace("\x00", "\ufffd")
        assert conn.execute(
            "SELECT name, attributes ->> 'name' FROM cognito.nul_users WHERE username = 'nul'"
        ).fetchone() == (shown, shown)
        assert len(conn.execute("SELECT * FROM cognito.nul_users").fetchall()) == 2
