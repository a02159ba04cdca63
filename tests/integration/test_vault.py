"""Tier 2: sql/vault.sql run by a superuser in a database where other roles create objects.

Its secrets' behaviour (read by name or id, cached, rotated, kept out of logs) is tested in
test_secrets.py, on the server of tests/support/credentials.py.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from ..support.planted import preowned_schema_run, superuser_run
from ..support.postgres import SCRIPTS, Database
from ..support.reliability import record

VAULT_SQL = SCRIPTS / "vault.sql"

# What a superuser does with the vault after installing it; every function of it runs.
CALLS = """
SELECT vault.create_secret('first secret', 'planted_check', 'a description') AS id \\gset
SELECT vault.update_secret(:'id', new_secret => 'second secret');
SELECT vault.update_secret(:'id', new_name => 'planted_check2', new_description => 'd');
SELECT vault.rotate_key();
SELECT decrypted_secret FROM vault.decrypted_secrets;
"""


@pytest.mark.parametrize("path", ["default", "public first"])
def test_a_superuser_running_vault_sql_calls_no_planted_function(server, path):
    name = f"vault_{path.split()[0]}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = Database(server, name)
    try:
        # Installed before: a role that may create in public could otherwise keep pgcrypto
        # from installing there (its gen_random_uuid() taken), which is PostgreSQL's matter.
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pgcrypto")
            conn.execute("CREATE EXTENSION file_fdw")
        key_file = server.base / f"{name}.keys"
        run = superuser_run(
            target, VAULT_SQL, CALLS, path == "public first", "-v", f"vault_key_file={key_file}"
        )
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            secret = conn.execute(
                "SELECT decrypted_secret FROM vault.decrypted_secrets "
                "WHERE name OPERATOR(pg_catalog.=) 'planted_check2'"
            ).fetchone()
        record(
            "attack",
            f"vault.sql and its functions run by a superuser ({path} search_path) with "
            f"{run.planted} functions/operators planted in public and pg_temp",
            f"none called ({run.calls} calls; the control reached {run.control})",
        )
        assert run.planted > 500 and run.control >= 1
        assert run.calls == 0, run.called()
        assert secret == ("second secret",)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_vault_sql_refuses_a_vault_schema_another_role_made_first(server):
    """A database's owner (no superuser) makes schema vault before a superuser installs the
    vault there: as the schema's owner it could add vault.pgp_sym_encrypt(text, text,
    text), found before pgcrypto's by the functions' search_path, which create_secret
    then called as the superuser with the secret and the key (it made its author a
    superuser), or drop the vault's objects.  The script refuses and installs nothing."""
    key_file = server.base / f"owned_{uuid.uuid4().hex[:8]}.keys"
    done, functions = preowned_schema_run(
        server, VAULT_SQL, "vault", "-v", f"vault_key_file={key_file}"
    )
    record(
        "attack",
        "a database owner makes schema vault before a superuser runs vault.sql",
        "refused: " + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:140],
    )
    assert done.returncode != 0
    assert "schema vault is not safe to install into" in done.stderr
    assert functions == 0


def test_vault_sql_refuses_a_pgcrypto_another_role_created_first(server):
    """pgcrypto is a trusted extension: a database's owner (no superuser) creates it first,
    in a schema of its own.  The vault's functions then looked for pgp_sym_encrypt there;
    as the extension's owner it dropped it (CASCADE took vault.decrypted_secrets) and put
    its own pgp_sym_encrypt(text, text, text) there, which create_secret called as the
    superuser with the secret and the key (it made its author a superuser).  The script
    refuses and installs nothing."""
    key_file = server.base / f"owned_{uuid.uuid4().hex[:8]}.keys"
    done, functions = preowned_schema_run(
        server, VAULT_SQL, "mine", "-v", f"vault_key_file={key_file}",
        then="CREATE EXTENSION pgcrypto SCHEMA mine", counted="vault",
    )  # fmt: skip
    record(
        "attack",
        "a database owner creates pgcrypto (trusted) in its own schema before vault.sql",
        "refused: " + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:140],
    )
    assert done.returncode != 0
    assert "extension pgcrypto (owned by r_" in done.stderr
    assert functions == 0
