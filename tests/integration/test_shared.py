"""Tier 2: the cache every backend of the server shares (cognito_fdw/shared.py), counted at
the proxy: a repeated request sends nothing, other credentials never see an answer, a
table's lower cache_ttl, a COMMIT of membership changes, and clearing it."""

from __future__ import annotations

import re

import psycopg
import pytest

from ..support.pool import POOL_REGION
from ..support.postgres import SCRIPTS, create_server, new_role, psql, role_dsn

# Roles of their own that log in with no password: the Docker tiers leave these to the local one.
pytestmark = [pytest.mark.server, pytest.mark.local_only]


@pytest.fixture(scope="module")
def cached(setup, pool, groups_pool_id, proxy):
    """Schema ca: users on a server with the default cache_ttl, users_fresh (table
    cache_ttl 0) and members (read-only) and wmembers (writable) of the groups pool, all
    through the proxy; the monitor views on the server."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(conn, "ca_srv", pool.pool_id, proxy.url, region=POOL_REGION, cache_ttl=None)
        create_server(conn, "cg_srv", groups_pool_id, proxy.url, cache_ttl="30")
        conn.execute("CREATE SCHEMA ca")
        conn.execute("GRANT USAGE ON SCHEMA ca TO PUBLIC")
        for name, options in (("users", ""), ("users_fresh", ", cache_ttl '0'")):
            conn.execute(
                f"CREATE FOREIGN TABLE ca.{name} (username text, email text, enabled boolean) "
                f"SERVER ca_srv OPTIONS (object 'users'{options})"
            )
        conn.execute(
            "CREATE FOREIGN TABLE ca.members (group_name text, username text) "
            "SERVER cg_srv OPTIONS (object 'group_members')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE ca.wmembers (group_name text, username text, membership text) "
            "SERVER cg_srv OPTIONS (object 'group_members', writable 'true')"
        )
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA ca TO PUBLIC")
    done = psql(setup, "-v", "server=ca_srv", "-f", str(SCRIPTS / "monitor.sql"))
    assert done.returncode == 0, done.stderr
    return pool


def lookup(conn, table: str, username: str) -> list:
    return conn.execute(
        f"SELECT username, email, enabled FROM ca.{table} WHERE username = %s", (username,)
    ).fetchall()


def test_a_repeated_lookup_is_answered_from_the_cache_with_no_request(db, cached, proxy):
    name = cached.users[3]["Username"]
    proxy.clear()
    first = lookup(db, "users", name)
    assert len(first) == 1 and len(proxy.requests("ListUsers")) == 1
    # Another connection, another backend: the cache is the server's, not the backend's.
    with psycopg.connect(db.info.dsn, autocommit=True) as other:
        for _ in range(3):
            assert lookup(other, "users", name) == first
        explain = [
            row[0]
            for row in other.execute(
                f"EXPLAIN ANALYZE SELECT * FROM ca.users WHERE username = '{name}'"
            )
        ]
    assert len(proxy.requests("ListUsers")) == 1  # four more reads, no request
    text = "\n".join(explain)
    assert "Cognito actual: 0 requests in 1 scan" in text
    assert re.search(r"Cognito actual: 1 answer from the cache, the oldest \d+\.\d s old", text)
    plain = "\n".join(
        row[0] for row in db.execute(f"EXPLAIN SELECT * FROM ca.users WHERE username = '{name}'")
    )
    assert re.search(r"Cognito: cache: 1 of 1 answer cached, the oldest \d+\.\d s old", plain)
    # The default applies: the server sets no cache_ttl.
    assert "cache_ttl 10 s" in plain


def test_a_table_may_lower_the_ttl_to_none(db, cached, proxy):
    name = cached.users[4]["Username"]
    lookup(db, "users", name)
    proxy.clear()
    lookup(db, "users_fresh", name)
    lookup(db, "users_fresh", name)
    assert len(proxy.requests("ListUsers")) == 2


def test_other_credentials_never_read_an_answer(db, cached, proxy):
    """A role with its own user mapping (the same key id, another secret; then another key
    id) sends its own request: the cache is keyed by who signs."""
    name = cached.users[5]["Username"]
    lookup(db, "users", name)
    for key_id, secret in (("AKIDTESTING", "another-secret"), ("AKIDOTHER", "testing-secret")):
        role = new_role(db)
        db.execute(
            f"CREATE USER MAPPING FOR {role} SERVER ca_srv OPTIONS "
            f"(aws_access_key_id '{key_id}', aws_secret_access_key '{secret}')"
        )
        proxy.clear()
        with psycopg.connect(role_dsn(db.info.dsn, role), autocommit=True) as conn:
            assert len(lookup(conn, "users", name)) == 1
            assert len(proxy.requests("ListUsers")) == 1
            lookup(conn, "users", name)  # its own answer is cached for it
            assert len(proxy.requests("ListUsers")) == 1


def test_a_commit_of_membership_changes_clears_the_pools_memberships(db, cached, proxy):
    read = "SELECT group_name FROM ca.members WHERE username = 'dave' ORDER BY 1"
    assert db.execute(read).fetchall() == []
    proxy.clear()
    assert db.execute(read).fetchall() == []
    assert proxy.requests("AdminListGroupsForUser") == []  # cached
    try:
        with db.transaction():
            # The writable table reads Cognito itself, never the cache.
            assert db.execute(
                "SELECT count(*) FROM ca.wmembers WHERE username = 'dave'"
            ).fetchone() == (0,)
            assert len(proxy.requests("AdminListGroupsForUser")) == 1
            db.execute("INSERT INTO ca.wmembers (group_name, username) VALUES ('staff', 'dave')")
        proxy.clear()
        assert db.execute(read).fetchall() == [("staff",)]
        assert len(proxy.requests("AdminListGroupsForUser")) == 1
    finally:
        db.execute("DELETE FROM ca.wmembers WHERE username = 'dave'")


def test_clear_cache_empties_it_and_only_its_owner_may(db, cached, proxy):
    name = cached.users[6]["Username"]
    lookup(db, "users", name)
    entries = db.execute(
        "SELECT sum(entries) FROM cognito_fdw_monitor.cache WHERE operation = 'ListUsers'"
    ).fetchone()[0]
    assert entries >= 1
    assert db.execute("SELECT cognito_fdw_monitor.clear_cache()").fetchone()[0] >= entries
    assert db.execute("SELECT count(*) FROM cognito_fdw_monitor.cache").fetchone() == (0,)
    proxy.clear()
    lookup(db, "users", name)
    assert len(proxy.requests("ListUsers")) == 1
    role = new_role(db)
    with (
        psycopg.connect(role_dsn(db.info.dsn, role), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT cognito_fdw_monitor.clear_cache()")
