"""Tier 2: vault secrets (secrets.py, sql/vault.sql): read by name or id, as the right
role, cached for ``secret_cache_seconds``, re-encrypted on key rotation, and never in a log
or another role's hands.

They run on the server and moto of tests/support/credentials.py (fixtures ``aws``, ``keyed``
and ``admin``); moto checks every signature, so a query proves the secret arrived.
"""

from __future__ import annotations

import os
import re
import threading
import uuid

import psycopg
import pytest

from cognito_fdw.aws.secrets import APPLICATION_NAME

from ..support.credentials import USERS, error_in_session, make_server, usernames, vault_secret
from ..support.postgres import (
    explain_lines,
    literal,
    new_role,
    pg_dump,
    role_dsn,
    server_file,
    write_server_file,
)
from ..support.reliability import record


def test_vault_secret_by_name_and_by_id(keyed, admin, aws):
    key_id, secret, name, secret_id = vault_secret(admin, aws)
    by_name = make_server(admin, aws, aws_access_key_id=key_id, api_key_name=name)
    by_id = make_server(admin, aws, aws_access_key_id=key_id, api_key_id=str(secret_id))
    assert usernames(keyed.dsn, by_name) == USERS
    assert usernames(keyed.dsn, by_id) == USERS
    with psycopg.connect(keyed.dsn, autocommit=True) as conn:
        plan = explain_lines(conn, f"EXPLAIN VERBOSE SELECT * FROM {by_id}")
    lines = [line.strip() for line in plan]
    assert "Cognito: credentials from a secret in vault.decrypted_secrets (by id)" in lines


def test_vault_key_file_is_private_and_outside_the_table(keyed, admin):
    mode, text = server_file(keyed, keyed.key_file)
    assert mode & 0o077 == 0
    key = text.split("\t")[1].strip()
    admin.execute("SELECT vault.create_secret('x', %s)", (f"k_{uuid.uuid4().hex[:8]}",))
    dump = pg_dump(keyed, "--data-only", "-n", "vault")
    assert "vault.secrets" in dump  # the dump is of the vault's tables
    assert key not in dump


def test_secret_update_is_picked_up_after_the_cache_time(keyed, admin, aws):
    key_id, secret, name, secret_id = vault_secret(admin, aws)
    fresh = make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, secret_cache_seconds="0"
    )
    cached = make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, secret_cache_seconds="3600"
    )
    with psycopg.connect(keyed.dsn, autocommit=True) as held:
        assert [r[0] for r in held.execute(f"SELECT username FROM {cached} ORDER BY 1")] == USERS
        admin.execute("SELECT vault.update_secret(%s, 'not-the-secret')", (secret_id,))
        # The same backend still holds the secret it read; another one reads the new one.
        assert [r[0] for r in held.execute(f"SELECT username FROM {cached} ORDER BY 1")] == USERS
        assert re.match(
            r"Cognito \w+ failed", str(error_in_session(keyed.dsn, f"SELECT * FROM {fresh}"))
        )
        admin.execute("SELECT vault.update_secret(%s, %s)", (secret_id, secret))
    assert usernames(keyed.dsn, fresh) == USERS


def test_key_rotation_re_encrypts_every_secret(keyed, admin, aws):
    key_id, secret, name, _ = vault_secret(admin, aws)
    table = make_server(admin, aws, aws_access_key_id=key_id, api_key_name=name)
    lines = server_file(keyed, keyed.key_file)[1].splitlines()
    newest = max(int(line.split("\t")[0]) for line in lines)
    new_line = f"{newest + 1}\t{os.urandom(32).hex()}"
    write_server_file(keyed, keyed.key_file, "\n".join([*lines, new_line]) + "\n")
    assert admin.execute("SELECT vault.rotate_key()").fetchone()[0] >= 1
    write_server_file(keyed, keyed.key_file, new_line + "\n")  # the old key is gone
    rows = admin.execute(
        "SELECT key_id, decrypted_secret FROM vault.decrypted_secrets WHERE name = %s", (name,)
    ).fetchall()
    assert rows == [(newest + 1, secret)]
    assert usernames(keyed.dsn, table) == USERS


def test_the_servers_secret_is_used_as_its_owner_and_never_shown_to_its_users(keyed, admin, aws):
    # A role with USAGE signs with the server's key; it cannot read the key itself.
    key_id, secret, name, _ = vault_secret(admin, aws)
    table = make_server(admin, aws, aws_access_key_id=key_id, api_key_name=name)
    role = new_role(admin)
    dsn = role_dsn(keyed.dsn, role)
    assert usernames(dsn, table) == USERS
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT decrypted_secret FROM vault.decrypted_secrets").fetchall()
        # Its own mapping naming the server's secret with another key id is its own secret.
        conn.execute(
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER {table} "
            f"OPTIONS (aws_access_key_id 'AKIDOTHER', api_key_name {literal(name)})"
        )
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table}")


def test_a_role_that_cannot_read_its_mappings_secret_cannot_use_it(keyed, admin, aws):
    key_id, secret, name, _ = vault_secret(admin, aws)
    table = make_server(admin, aws, mapping={"aws_access_key_id": key_id, "api_key_name": name})
    role = new_role(admin)
    dsn = role_dsn(keyed.dsn, role)
    err = error_in_session(dsn, f"SELECT * FROM {table}")
    assert err.diag.message_primary == (
        f"role {role} may not read the secret in vault.decrypted_secrets"
    )
    assert f"GRANT SELECT ON vault.decrypted_secrets TO {role}" in err.diag.message_hint
    # Nor through a superuser's session that SET ROLEs to it.
    with psycopg.connect(keyed.dsn, autocommit=True) as conn:
        conn.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table}")
    admin.execute(f"GRANT USAGE ON SCHEMA vault TO {role}")
    admin.execute(f"GRANT SELECT ON vault.decrypted_secrets TO {role}")
    assert usernames(dsn, table) == USERS


def test_a_secrets_relation_not_owned_by_a_superuser_is_refused(keyed, admin, aws):
    role = new_role(admin, login=False)
    admin.execute(f"CREATE TABLE public.{role} (id int, name text, decrypted_secret text)")
    admin.execute(f"ALTER TABLE public.{role} OWNER TO {role}")
    table = make_server(
        admin, aws, aws_access_key_id="AKIDX", api_key_name="x", secrets_relation=f"public.{role}"
    )
    err = error_in_session(keyed.dsn, f"SELECT * FROM {table}")
    assert err.diag.message_primary == f"secrets relation public.{role} is not owned by a superuser"


def test_the_loopback_shows_no_secret_and_gives_up_on_a_lock(keyed, admin, aws):
    key_id, secret, name, _ = vault_secret(admin, aws)
    table = make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, secret_cache_seconds="0"
    )
    result = {}
    with psycopg.connect(keyed.dsn) as locker:
        locker.execute("LOCK TABLE vault.secrets IN ACCESS EXCLUSIVE MODE")
        reader = threading.Thread(
            target=lambda: result.update(
                error=error_in_session(keyed.dsn, f"SELECT * FROM {table}")
            )
        )
        reader.start()
        rows = []
        while reader.is_alive() and not rows:
            rows = admin.execute(
                "SELECT query, wait_event_type FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock'",
                (APPLICATION_NAME,),
            ).fetchall()
        reader.join()
        locker.rollback()
    assert rows, "the loopback connection was never seen waiting"
    # A lock met while parsing leaves pg_stat_activity showing the session's previous
    # statement (the extended protocol reports a statement when it executes): either of the
    # loopback's two statements may show, and neither carries the secret.
    assert "decrypted_secret" in rows[0][0] or "set_config('role'" in rows[0][0]
    assert secret not in repr(rows)
    error = result["error"]
    assert error.diag.message_primary == "reading the secret from vault.decrypted_secrets failed"
    assert "lock timeout" in error.diag.message_detail


def test_a_failed_vault_call_leaves_its_secret_out_of_the_log(keyed, admin):
    # A granted non-superuser: the functions' SET log_min_error_statement works for it only
    # because they run as their (superuser) owner.
    role = new_role(admin)
    admin.execute(f"ALTER ROLE {role} SET log_statement = 'none'")  # this cluster logs 'all'
    admin.execute(f"GRANT USAGE ON SCHEMA vault TO {role}")
    admin.execute(f"GRANT EXECUTE ON FUNCTION vault.create_secret, vault.update_secret TO {role}")
    name = f"s_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret('first', %s)", (name,))
    secret = f"LeakCanaryVault{uuid.uuid4().hex}"
    failing = [
        ("SELECT vault.create_secret({}, {})", (secret, name)),  # a duplicate name
        ("SELECT vault.update_secret({}, {})", (str(uuid.uuid4()), secret)),  # no such id
    ]
    with psycopg.connect(role_dsn(keyed.dsn, role)) as conn:
        for template, args in failing:
            # The secret written into the statement, as psql sends it (not a bind parameter).
            statement = psycopg.sql.SQL(template).format(*map(psycopg.sql.Literal, args))
            with pytest.raises(psycopg.Error, match="duplicate key|no secret with id"):
                conn.execute(statement)
            conn.rollback()
    log = keyed.log()
    assert "duplicate key value" in log and "vault: no secret with id" in log
    assert secret not in log


def server_naming_a_secret(keyed, admin, aws):
    """A new vault secret, a server naming it (STS at moto), and a new role: the secret, the
    server's users table and the role's dsn."""
    secret = vault_secret(admin, aws)
    table = make_server(
        admin, aws, aws_access_key_id=secret.key_id, api_key_name=secret.name,
        sts_endpoint_url=aws.url,
    )  # fmt: skip
    return secret, table, role_dsn(keyed.dsn, new_role(admin))


def map_the_secret_beside_a_role(conn, table, secret, session) -> None:
    """The role's own mapping: the server's key id and secret name, and a role to assume."""
    conn.execute(
        f"CREATE USER MAPPING FOR CURRENT_USER SERVER {table} OPTIONS ("
        f"aws_access_key_id {literal(secret.key_id)}, api_key_name {literal(secret.name)}, "
        "role_arn 'arn:aws:iam::123456789012:role/other', "
        f"role_session_name {literal(session)})"
    )


def test_a_mapping_cannot_have_the_servers_secret_assume_a_role_of_its_choice(keyed, admin, aws):
    # Red team: the server's secret is read as its owner only for what the server itself
    # does with it.  A mapping repeating the server's key id and secret name beside a
    # role_arn (which the guard lets it set "beside its own keys") would otherwise make the
    # server's key assume any role that key may assume.
    session = f"t-{uuid.uuid4().hex[:8]}"
    secret, table, dsn = server_naming_a_secret(keyed, admin, aws)
    assert usernames(dsn, table) == USERS
    with psycopg.connect(dsn, autocommit=True) as conn:
        map_the_secret_beside_a_role(conn, table, secret, session)
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table}")
    assert aws.assumed_roles(session) == 0


def test_a_cached_server_secret_is_not_reused_for_a_mapping_that_changes_its_use(keyed, admin, aws):
    # The same, in one session whose backend has just read the secret as the server's owner:
    # the cached secret must not stand in for the owner check.
    session = f"t-{uuid.uuid4().hex[:8]}"
    secret, table, dsn = server_naming_a_secret(keyed, admin, aws)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert [r[0] for r in conn.execute(f"SELECT username FROM {table} ORDER BY 1")] == USERS
        map_the_secret_beside_a_role(conn, table, secret, session)
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table}")
        # A mapping that repeats the server's options exactly still signs as the server.
        conn.execute(
            f"ALTER USER MAPPING FOR CURRENT_USER SERVER {table} OPTIONS ("
            "DROP role_arn, DROP role_session_name)"
        )
        assert [r[0] for r in conn.execute(f"SELECT username FROM {table} ORDER BY 1")] == USERS
    assert aws.assumed_roles(session) == 0


def test_a_server_matching_on_some_options_lends_no_owner_rights(keyed, admin, aws):
    # Server B names the secret too but also assumes a role with it; A (which the role
    # queries, with B's key id and secret name in its mapping) does not.  B's owner's
    # rights are for B's use of the secret only.
    key_id, secret, name, _ = vault_secret(admin, aws)
    make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, sts_endpoint_url=aws.url,
        role_arn="arn:aws:iam::123456789012:role/reader",
    )  # fmt: skip
    table_a = make_server(admin, aws)
    role = new_role(admin)
    dsn = role_dsn(keyed.dsn, role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER {table_a} OPTIONS ("
            f"aws_access_key_id {literal(key_id)}, api_key_name {literal(name)})"
        )
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table_a}")


def test_a_lookalike_server_is_not_lent_another_servers_secret(keyed, admin, aws):
    # Red team: a role that may own servers (USAGE on multicorn) and may use the server
    # naming the secret makes a server of its own repeating every option that says how the
    # secret is used, with limits of its own.  The secret is the queried table's server's,
    # by that server's identity, never by matching options.
    secret, table, dsn = server_naming_a_secret(keyed, admin, aws)
    role = dsn.split("user=")[1].split()[0]
    admin.execute(f"GRANT USAGE ON FOREIGN DATA WRAPPER multicorn TO {role}")
    admin.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    options = admin.execute(
        "SELECT srvoptions FROM pg_foreign_server WHERE srvname = %s", (table,)
    ).fetchone()[0]
    copied = ", ".join(
        f"{name} {literal(value)}" for name, _, value in (o.partition("=") for o in options)
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The real server's table first: its secret is now in this backend's caches.
        assert [r[0] for r in conn.execute(f"SELECT username FROM {table} ORDER BY 1")] == USERS
        conn.execute(
            f"CREATE SERVER {role}_srv FOREIGN DATA WRAPPER multicorn OPTIONS ({copied}, "
            "max_requests_per_second '1000', username_lookup 'admin_get_user')"
        )
        conn.execute(
            f"CREATE FOREIGN TABLE {role}.lookalike (username text) SERVER {role}_srv "
            "OPTIONS (object 'users')"
        )
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(f"SELECT * FROM {role}.lookalike")
    record(
        "attack",
        "a lookalike server repeats a server's secret-use options with limits of its own",
        f"refused: {caught.value.diag.message_primary}"[:160],
    )
    assert f"role {role} may not read the secret" in caught.value.diag.message_primary
    # A new session (nothing cached) is refused the same way.
    error = error_in_session(dsn, f"SELECT * FROM {role}.lookalike")
    assert f"role {role} may not read the secret" in error.diag.message_primary


@pytest.mark.parametrize(
    "template",
    [
        "INSERT INTO vault.secrets (name, secret) VALUES ({}, {}) RETURNING key_id",
        "INSERT INTO vault.secrets (name, secret, key_id) VALUES ({}, {}, 1)",
        "UPDATE vault.secrets SET secret = {1} WHERE name = {0}",
        "INSERT INTO vault.decrypted_secrets (name, decrypted_secret) VALUES ({}, {})",
        "UPDATE vault.decrypted_secrets SET decrypted_secret = {1} WHERE name = {0}",
        "MERGE INTO vault.secrets s USING (VALUES ({}, {}::bytea)) v(n, x) ON s.name = v.n "
        "WHEN MATCHED THEN UPDATE SET secret = v.x",
    ],
    ids=["older insert form", "insert with a key id", "update in place", "insert into the view",
         "update the view", "merge"],
)  # fmt: skip
def test_a_secret_written_into_the_table_is_refused_before_any_message_holds_it(
    keyed, admin, template
):
    name = f"s_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret('first', %s)", (name,))
    secret = f"LeakCanaryInsert{uuid.uuid4().hex}"
    statement = psycopg.sql.SQL(template).format(*map(psycopg.sql.Literal, (name, secret)))
    with psycopg.connect(keyed.dsn) as conn:
        conn.execute("SET log_statement = 'none'")  # this cluster logs every statement
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(statement)
    diag = caught.value.diag
    shown = " ".join(str(x) for x in (diag.message_primary, diag.message_detail, caught.value))
    command = template.split(" (")[0].split(" SET")[0]
    record(
        "attack",
        f"a secret written into vault.secrets directly ({command})",
        f"refused: {diag.message_primary}"[:160],
    )
    assert "vault.create_secret" in diag.message_hint
    hexed = secret.encode().hex()
    log = keyed.log()
    assert secret not in shown and hexed not in shown
    assert secret not in log and hexed not in log
    # The secret stored by create_secret is unchanged.
    assert admin.execute(
        "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = %s", (name,)
    ).fetchone() == ("first",)


def test_a_secret_copied_into_the_table_is_refused_before_any_message_holds_it(keyed, admin):
    """COPY (psql's \\copy from a file of names and secrets) fires the same row trigger; its
    refusal carried PostgreSQL's CONTEXT line "COPY secrets, line 1: <the row>", secret
    included, to the client and to the server log."""
    name = f"s_{uuid.uuid4().hex[:8]}"
    secret = f"LeakCanaryCopy{uuid.uuid4().hex}"
    with psycopg.connect(keyed.dsn) as conn:
        conn.execute("SET log_statement = 'none'")
        with (
            pytest.raises(psycopg.Error) as caught,
            conn.cursor().copy("COPY vault.secrets (name, secret) FROM STDIN") as copy,
        ):
            copy.write_row((name, secret.encode()))
    diag = caught.value.diag
    shown = " ".join(
        str(x) for x in (diag.message_primary, diag.message_detail, diag.context, caught.value)
    )
    record(
        "attack",
        "a secret copied into vault.secrets (COPY FROM STDIN, psql's \\copy)",
        f"refused: {diag.message_primary}"[:160],
    )
    assert "vault.create_secret" in diag.message_hint
    # PostgreSQL cuts a CONTEXT line at 100 characters: look for the beginnings.
    pieces = (secret[:24], secret.encode().hex()[:24])
    log = keyed.log()
    assert not [piece for piece in pieces if piece in shown or piece in log]
    assert (
        admin.execute("SELECT count(*) FROM vault.secrets WHERE name = %s", (name,)).fetchone()[0]
        == 0
    )
