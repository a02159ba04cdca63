"""Tier 2: sql/vault.sql run by a superuser in a database where other roles create objects;
where its key file is named (only where its owner reads), who decrypts, and the upgrade of
an install that read its key through a file_fdw table.

Its secrets' behaviour (read by name or id, cached, rotated, kept out of logs) is tested in
test_secrets.py, on the server of tests/support/credentials.py.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest

from ..support.catalogs import places_naming
from ..support.planted import preowned_schema_run, superuser_run
from ..support.postgres import SCRIPTS, Database, error_of, new_role, psql, role_dsn
from ..support.reliability import record

VAULT_SQL = SCRIPTS / "vault.sql"
#: The install before the key file's path left the catalogs (a frozen copy).
OLD_VAULT_SQL = Path(__file__).parents[1] / "support" / "vault_file_fdw.sql"
#: In the key file's name: no catalog holds it by chance.
MARKER = "vaultkeyfilemarker"

# What a superuser does with the vault after installing it; every function of it runs.
CALLS = """
SELECT vault.create_secret('first secret', 'planted_check', 'a description') AS id \\gset
SELECT vault.update_secret(:'id', new_secret => 'second secret');
SELECT vault.update_secret(:'id', new_name => 'planted_check2', new_description => 'd');
SELECT vault.rotate_key();
SELECT decrypted_secret FROM vault.decrypted_secrets;
GRANT SELECT ON vault.decrypted_secrets TO PUBLIC;
REVOKE SELECT ON vault.decrypted_secrets FROM PUBLIC;
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


@pytest.mark.parametrize("how", ["owns it", "may create in it"])
def test_a_schema_vault_another_role_controls_is_refused_before_anything_in_it_runs(server, how):
    """Its vault.key_file, a view calling the role's function, would run as the superuser
    running the script and name the file the vault's functions read."""
    name = f"vault_schema_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = Database(server, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            role = new_role(admin)
            if how == "owns it":
                admin.execute(f"CREATE SCHEMA vault AUTHORIZATION {role}")
            else:
                admin.execute("CREATE SCHEMA vault")
                admin.execute(f"GRANT USAGE, CREATE ON SCHEMA vault TO {role}")
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
            conn.execute("CREATE SEQUENCE vault.calls")
            conn.execute("GRANT USAGE ON SEQUENCE vault.calls TO PUBLIC")
            conn.execute(
                "CREATE FUNCTION vault.planted() RETURNS text LANGUAGE sql "
                "AS 'SELECT nextval(''vault.calls'')::text'"
            )
            conn.execute("CREATE VIEW vault.key_file AS SELECT vault.planted() AS path")
        done = psql(target, "-f", str(VAULT_SQL))
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            calls = admin.execute("SELECT is_called FROM vault.calls").fetchone()[0]
            installed = admin.execute("SELECT to_regprocedure('vault._keys()')").fetchone()[0]
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    record(
        "attack",
        f"a role that {how} (schema vault) plants vault.key_file for the superuser running "
        "sql/vault.sql",
        "refused: vault.sql: schema vault is not safe to install into; nothing of it ran",
    )
    assert done.returncode != 0
    assert "vault.sql: schema vault is not safe to install into" in done.stderr
    assert not calls and installed is None


@pytest.fixture(scope="module")
def vault_db(server):
    """A database of its own with multicorn and sql/vault.sql; its key file's name holds
    MARKER.  Yields the database and the key file's path."""
    name = f"vault_path_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = Database(server, name)
    key_file = server.base / f"{name}_{MARKER}.keys"
    try:
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION multicorn")
        done = psql(target, "-v", f"vault_key_file={key_file}", "-f", str(VAULT_SQL))
        assert done.returncode == 0, done.stderr
        yield target, key_file
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        key_file.unlink(missing_ok=True)


def _role(admin, *grants: str) -> str:
    """A new login role granted ``grants`` (each with ``{role}`` for its name)."""
    role = new_role(admin)
    for grant in grants:
        admin.execute(grant.format(role=role))
    return role


# The roles that search, what they are granted, and what each does first with it.
ROLES = {
    "SELECT on a table": (
        ["CREATE TABLE public.{role}_t (x int)", "GRANT SELECT ON public.{role}_t TO {role}"],
        ["SELECT * FROM public.{role}_t"],
    ),
    "CREATE on a schema and USAGE on the multicorn wrapper": (
        ["CREATE SCHEMA {role}_s", "GRANT USAGE, CREATE ON SCHEMA {role}_s TO {role}",
         "GRANT USAGE ON FOREIGN DATA WRAPPER multicorn TO {role}"],
        ["CREATE SERVER {role}_srv FOREIGN DATA WRAPPER multicorn "
         "OPTIONS (wrapper 'cognito_fdw.CognitoFdw')",
         "CREATE TABLE {role}_s.mine (x text)"],
    ),
    "SELECT on vault.decrypted_secrets": (
        ["GRANT USAGE ON SCHEMA vault TO {role}",
         "GRANT SELECT ON vault.decrypted_secrets TO {role}"],
        ["SELECT * FROM vault.decrypted_secrets",
         "SELECT vault._decrypt(id) FROM vault.decrypted_secrets"],
    ),
    "EXECUTE on create_secret and update_secret": (
        ["GRANT USAGE ON SCHEMA vault TO {role}",
         "GRANT EXECUTE ON FUNCTION vault.create_secret, vault.update_secret TO {role}"],
        ["SELECT vault.update_secret(vault.create_secret('a', '{role}'), new_secret => 'b')"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", ROLES)
def test_no_role_but_the_vault_owner_reads_where_its_key_file_is(vault_db, kind):
    target, key_file = vault_db
    grants, uses = ROLES[kind]
    with psycopg.connect(target.dsn, autocommit=True) as admin:
        role = _role(admin, *grants)
        # A superuser's session that ran every vault function stays open beside it.
        admin.execute(f"SELECT vault.create_secret('s', 'for_{role}')")
        admin.execute("SELECT vault.rotate_key()")
        admin.execute("SELECT count(decrypted_secret) FROM vault.decrypted_secrets")
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
            for use in uses:
                conn.execute(use.format(role=role))
            found, searched = places_naming(conn, key_file.name)
        # The control: the owner finds it, so the search would.
        owners, _ = places_naming(admin, key_file.name)
    record(
        "attack",
        f"a role with {kind} searches every relation and definition it may read for the "
        "vault's key file path",
        f"found in none of {searched} places (the owner finds it in {', '.join(owners)})",
    )
    assert "vault.key_file" in owners
    assert searched > 100
    assert found == []


@pytest.fixture
def broken_key_file(vault_db, request):
    """The key file missing, unreadable, or with a malformed line holding a key; restored
    after.  Yields which, and the text no message may show."""
    target, key_file = vault_db
    with psycopg.connect(target.dsn, autocommit=True) as admin:  # one to decrypt
        admin.execute("SELECT vault.create_secret('s', %s)", (f"s_{uuid.uuid4().hex[:8]}",))
    kept, owner = key_file.read_bytes(), key_file.stat()
    shown = MARKER
    if request.param.startswith("missing"):
        key_file.rename(key_file.with_suffix(".away"))
    if request.param == "missing, recorded as a path PostgreSQL writes otherwise":
        # pg_read_file names the file as it canonicalizes it (no '//', no '/./').
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            admin.execute(
                "UPDATE vault.key_file SET path = %s", (f"{key_file.parent}//./{key_file.name}",)
            )
    elif request.param == "unreadable":
        key_file.chmod(0)
    else:
        shown = f"LeakCanaryKey{uuid.uuid4().hex}"
        with key_file.open("a") as file:
            file.write(f"7 {shown}\n")  # a space, not a tab
    try:
        yield request.param, shown
    finally:
        key_file.with_suffix(".away").unlink(missing_ok=True)
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            admin.execute("UPDATE vault.key_file SET path = %s", (str(key_file),))
        key_file.write_bytes(kept)  # as root: given back to the server's OS user
        os.chown(key_file, owner.st_uid, owner.st_gid)
        key_file.chmod(0o600)


@pytest.mark.parametrize(
    "broken_key_file",
    [
        "missing",
        "missing, recorded as a path PostgreSQL writes otherwise",
        "unreadable",
        "holding a malformed line",
    ],
    indirect=True,
)
def test_a_key_file_that_cannot_be_read_is_not_named_in_any_message(
    server, vault_db, broken_key_file
):
    target, key_file = vault_db
    case, shown = broken_key_file
    with psycopg.connect(target.dsn, autocommit=True) as admin:
        role = _role(admin, *ROLES["SELECT on vault.decrypted_secrets"][0],
                     *ROLES["EXECUTE on create_secret and update_secret"][0])  # fmt: skip
    with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
        errors = [
            error_of(conn, "SELECT decrypted_secret FROM vault.decrypted_secrets"),
            error_of(conn, "SELECT vault.create_secret('x', %s)", (f"new_{role}",)),
        ]
    for error in errors:
        diag = error.diag
        text = " ".join(
            str(x) for x in (error, diag.message_detail, diag.message_hint, diag.context)
        )
        assert diag.message_primary.startswith("vault: "), text
        assert "vault.key_file" in (diag.message_hint or "") + diag.message_primary
        assert str(key_file) not in text and shown not in text, text
    assert shown not in server.log()
    record(
        "attack",
        f"a reader of vault.decrypted_secrets and a secret writer make the vault fail with "
        f"its key file {case}",
        f"{errors[0].diag.message_primary} ({errors[0].diag.message_detail or 'no detail'})"
        ": no path, no line",
    )


def test_only_the_views_readers_decrypt_and_none_reads_the_key(vault_db):
    target, _ = vault_db
    with psycopg.connect(target.dsn, autocommit=True) as admin:
        group = new_role(admin, login=False)
        reader = _role(admin, f"GRANT {group} TO {{role}}")
        outsider = _role(admin)
        name = f"for_{reader}"
        secret_id = admin.execute("SELECT vault.create_secret('the secret', %s)", (name,))
        secret_id = secret_id.fetchone()[0]
        admin.execute(f"GRANT USAGE ON SCHEMA vault TO {group}, {outsider}")
        admin.execute(f"GRANT SELECT ON vault.decrypted_secrets TO {group}")

        def as_role(role, statement, params=()):
            with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
                return conn.execute(statement, params).fetchall()

        def refused(role, statement, params=()):
            with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
                return error_of(conn, statement, params).diag.message_primary

        read = "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = %s"
        assert as_role(reader, read, (name,)) == [("the secret",)]
        assert as_role(reader, "SELECT vault._decrypt(%s)", (secret_id,)) == [("the secret",)]
        for key_reader in ("vault._keys()", "vault._current_key()"):
            message = refused(reader, f"SELECT * FROM {key_reader}")
            assert message.startswith("permission denied for function"), message
        for role in (outsider, reader):
            if role == reader:
                admin.execute(f"REVOKE SELECT ON vault.decrypted_secrets FROM {group}")
            assert refused(role, read, (name,)) == "permission denied for view decrypted_secrets"
            assert refused(role, "SELECT vault._decrypt(%s)", (secret_id,)) == (
                "permission denied for function _decrypt"
            )
        # Granted to PUBLIC, every role reads; revoked, none again.
        admin.execute("GRANT SELECT ON vault.decrypted_secrets TO PUBLIC")
        assert as_role(outsider, read, (name,)) == [("the secret",)]
        admin.execute("REVOKE SELECT ON vault.decrypted_secrets FROM PUBLIC")
        assert refused(outsider, "SELECT vault._decrypt(%s)", (secret_id,)) == (
            "permission denied for function _decrypt"
        )
    record(
        "attack",
        "a reader of vault.decrypted_secrets calls vault._keys() or vault._current_key() for "
        "the key; a role whose SELECT was revoked calls vault._decrypt()",
        "refused: permission denied for function (EXECUTE on _decrypt follows the view's "
        "SELECT grants)",
    )


def test_an_install_that_read_its_key_through_file_fdw_upgrades_keeping_its_key(server):
    name = f"vault_old_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = Database(server, name)
    key_file = server.base / f"{name}_{MARKER}.keys"
    try:
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            done = psql(target, "-v", f"vault_key_file={key_file}", "-f", str(OLD_VAULT_SQL))
            assert done.returncode == 0, done.stderr
            # A second key, as a rotation leaves it, and a secret under each.
            admin.execute("SELECT vault.create_secret('under key 1', 'one')")
            with key_file.open("a") as file:
                file.write(f"2\t{os.urandom(32).hex()}\n")
            admin.execute("SELECT vault.create_secret('under key 2', 'two')")
            reader = _role(admin, "GRANT USAGE ON SCHEMA vault TO {role}",
                           "GRANT SELECT ON vault.decrypted_secrets TO {role}")  # fmt: skip
            looker = _role(admin)
            with psycopg.connect(role_dsn(target.dsn, looker)) as conn:
                before, _ = places_naming(conn, key_file.name)
            kept = key_file.read_bytes()

            # Another key file named: refused, the old install left as it was.
            other = psql(target, "-v", f"vault_key_file={key_file}.other", "-f", str(VAULT_SQL))
            assert other.returncode != 0
            assert "vault: this database's vault already has its key file" in other.stderr
            assert admin.execute("SELECT to_regclass('vault.keys')").fetchone()[0] is not None
            for _ in range(2):  # the upgrade, then a run over the new install
                done = psql(target, "-f", str(VAULT_SQL))
                assert done.returncode == 0, done.stderr
            assert admin.execute(
                "SELECT to_regclass('vault.keys'), (SELECT count(*) FROM pg_foreign_server "
                "WHERE srvname = 'vault_key_file'), (SELECT path FROM vault.key_file)"
            ).fetchone() == (None, 0, str(key_file))
            assert key_file.read_bytes() == kept
            with psycopg.connect(role_dsn(target.dsn, reader), autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT name, key_id, decrypted_secret FROM vault.decrypted_secrets "
                    "ORDER BY name"
                ).fetchall()
            with psycopg.connect(role_dsn(target.dsn, looker)) as conn:
                after, searched = places_naming(conn, key_file.name)
            assert admin.execute("SELECT vault.rotate_key()").fetchone() == (1,)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        for leftover in (key_file, Path(f"{key_file}.other")):
            leftover.unlink(missing_ok=True)
    record(
        "attack",
        "a role with no grant reads the vault key file's path of an install that read it "
        "through a file_fdw table, before and after sql/vault.sql runs again",
        f"before: in {', '.join(before)}; after: in none of {searched} places (key file "
        "unchanged, both keys' secrets read)",
    )
    assert "pg_foreign_table" in before
    assert rows == [("one", 1, "under key 1"), ("two", 2, "under key 2")]
    assert after == []


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
    # Its schema is the role's too, which the script refuses first.
    assert "extension pgcrypto is, or would be created, in a schema" in done.stderr
    assert functions == 0


# What a database's owner (no superuser; PostgreSQL 15 gives it CREATE on public, where
# pgcrypto goes by default) plants for the vault's functions, and what makes each run.
# Each is more exact than pg_catalog's (anycompatiblearray || anycompatible, format(text,
# VARIADIC "any")), so it wins wherever public is in a function's search_path.
PLANTS = {
    "a reader of the view (the key file's int[] || int)": (
        "CREATE FUNCTION public.append(a integer[], b integer) RETURNS integer[] "
        "LANGUAGE plpgsql AS $$BEGIN INSERT INTO public.loot VALUES (current_user); "
        "RETURN pg_catalog.array_append(a, b); END$$",
        "CREATE OPERATOR public.|| (LEFTARG = integer[], RIGHTARG = integer, "
        "FUNCTION = public.append)",
        "SELECT count(decrypted_secret) FROM vault.decrypted_secrets",
    ),
    "a GRANT of the view (the event trigger's format)": (
        "CREATE FUNCTION public.format(f text, a text, b text, c text) RETURNS text "
        "LANGUAGE plpgsql AS $$BEGIN INSERT INTO public.loot VALUES (current_user); "
        "RETURN pg_catalog.format(f, a, b, c); END$$",
        "SELECT 1",
        "GRANT SELECT ON vault.decrypted_secrets TO PUBLIC",
    ),
}


@pytest.mark.parametrize("trigger", PLANTS)
def test_a_database_owner_plants_nothing_the_vaults_functions_call(server, trigger):
    """vault.sql's functions searched pgcrypto's schema (public, by default) for names
    pg_catalog has only in a polymorphic or variadic form: a database owner (CREATE on
    public) planted an exact-typed one, which ran as the vault's owner (a superuser) when
    a reader read the view or a superuser granted it."""
    function, operator, statement = PLANTS[trigger]
    role = f"r_{uuid.uuid4().hex[:8]}"
    name = f"vault_owned_{uuid.uuid4().hex[:6]}"
    key_file = server.base / f"{name}.keys"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    target = Database(server, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION pgcrypto")  # a superuser's, in public
        done = psql(target, "-v", f"vault_key_file={key_file}", "-f", str(VAULT_SQL))
        assert done.returncode == 0, done.stderr
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            admin.execute("SELECT vault.create_secret('the secret', 'planted')")
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as owner:
            owner.execute("CREATE TABLE public.loot (who name)")
            owner.execute("GRANT INSERT ON public.loot TO PUBLIC")
            owner.execute(function)
            owner.execute(operator)
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            admin.execute(statement)
            secret = admin.execute(
                "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'planted'"
            ).fetchone()
            loot = admin.execute("SELECT DISTINCT who FROM public.loot").fetchall()
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")
        key_file.unlink(missing_ok=True)
    record(
        "attack",
        "a database owner (CREATE on public, where pgcrypto is) plants an operator or "
        f"function more exact than pg_catalog's for the vault's functions; {trigger} runs",
        f"none ran ({len(loot)} calls as another role)",
    )
    assert secret == ("the secret",)
    assert loot == []


def test_a_reader_granted_by_a_dropped_role_keeps_no_decrypt(vault_db):
    """REASSIGN OWNED, DROP OWNED, DROP ROLE (PostgreSQL's way to remove a role) revokes
    what a role granted with its grant option, CASCADE: the view's SELECT of a reader it
    granted went, by no GRANT or REVOKE statement; EXECUTE on vault._decrypt stayed, and
    the reader decrypted by id what the view no longer showed it (a rotated secret too)."""
    target, _ = vault_db
    with psycopg.connect(target.dsn, autocommit=True) as admin:
        granter = _role(admin, "GRANT USAGE ON SCHEMA vault TO {role}")
        reader = _role(admin, "GRANT USAGE ON SCHEMA vault TO {role}")
        secret_id = admin.execute(
            "SELECT vault.create_secret('old secret', %s)", (f"for_{reader}",)
        ).fetchone()[0]
        admin.execute(f"GRANT SELECT ON vault.decrypted_secrets TO {granter} WITH GRANT OPTION")
        with psycopg.connect(role_dsn(target.dsn, granter), autocommit=True) as conn:
            conn.execute(f"GRANT SELECT ON vault.decrypted_secrets TO {reader}")
        with psycopg.connect(role_dsn(target.dsn, reader), autocommit=True) as conn:
            before = conn.execute("SELECT vault._decrypt(%s)", (secret_id,)).fetchone()
        admin.execute(f"DROP OWNED BY {granter}")
        admin.execute(f"DROP ROLE {granter}")
        admin.execute("SELECT vault.update_secret(%s, new_secret => 'new secret')", (secret_id,))
        with psycopg.connect(role_dsn(target.dsn, reader), autocommit=True) as conn:
            view = error_of(conn, "SELECT * FROM vault.decrypted_secrets").diag.message_primary
            decrypt = error_of(conn, "SELECT vault._decrypt(%s)", (secret_id,))
    record(
        "attack",
        "a reader of vault.decrypted_secrets granted by a role with the grant option, which "
        "DROP OWNED then removes, calls vault._decrypt() for a secret updated after",
        f"refused: {decrypt.diag.message_primary} (the event trigger follows DROP OWNED)",
    )
    assert before == ("old secret",)
    assert view == "permission denied for view decrypted_secrets"
    assert decrypt.diag.message_primary == "permission denied for function _decrypt"


def test_a_database_owner_that_drops_public_gets_no_key(server):
    """PostgreSQL 15's public belongs to pg_database_owner: a database's owner (no
    superuser) may DROP SCHEMA public CASCADE, which takes pgcrypto (installed there by
    default) with it, make public again and put a pgp_sym_decrypt(bytea, text) of its own
    there.  A vault function that calls pgcrypto by name, even a qualified one, then called
    it as the vault's owner with the key; bound to pgcrypto's functions by OID, they go with
    them and the vault fails instead."""
    role = f"r_{uuid.uuid4().hex[:8]}"
    name = f"vault_public_{uuid.uuid4().hex[:6]}"
    key_file = server.base / f"{name}.keys"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    target = Database(server, name)
    try:
        done = psql(target, "-v", f"vault_key_file={key_file}", "-f", str(VAULT_SQL))
        assert done.returncode == 0, done.stderr
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            schema = admin.execute(
                "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                "ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto'"
            ).fetchone()
            admin.execute("SELECT vault.create_secret('the secret', 'planted')")
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as owner:
            owner.execute("DROP SCHEMA public CASCADE")
            owner.execute("CREATE SCHEMA public")
            owner.execute("CREATE TABLE public.loot (who name, what text)")
            owner.execute("GRANT INSERT ON public.loot TO PUBLIC")
            for function, signature, returns, value in [
                ("pgp_sym_decrypt", "data bytea, key text", "text", "key"),
                ("pgp_sym_encrypt", "data text, key text, options text", "bytea", "data || key"),
            ]:
                owner.execute(
                    f"CREATE FUNCTION public.{function}({signature}) RETURNS {returns} "
                    "LANGUAGE plpgsql AS $$BEGIN "
                    f"INSERT INTO public.loot VALUES (current_user, {value}); RETURN NULL; END$$"
                )
        errors = []
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            for statement in (
                "SELECT count(decrypted_secret) FROM vault.decrypted_secrets",
                "SELECT vault.create_secret('another secret', 'second')",
            ):
                errors.append(error_of(admin, statement).diag.message_primary)
            loot = admin.execute("SELECT who, what FROM public.loot").fetchall()
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")
        key_file.unlink(missing_ok=True)
    record(
        "attack",
        "a database owner drops schema public (pgcrypto's, PostgreSQL 15 gives it to "
        "pg_database_owner) and puts its own pgp_sym_decrypt/pgp_sym_encrypt there",
        f"none ran ({len(loot)} calls); the vault fails until sql/vault.sql runs again: "
        f"{errors[0]}",
    )
    assert schema == ("public",)
    assert loot == []


def test_default_privileges_give_no_role_the_vault(server):
    """ALTER DEFAULT PRIVILEGES of the superuser that runs vault.sql (a read-only
    reporting role granted every new table, function and schema: a common pattern) gave
    that role vault.key_file, vault._keys() and, through the view, every secret: the
    script revoked what it creates from PUBLIC only.  On a fresh install every object is
    its owner's alone; a run over an install keeps what was granted since, and the
    internals stay the owner's."""
    name = f"vault_defacl_{uuid.uuid4().hex[:6]}"
    key_file = server.base / f"{name}.keys"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = Database(server, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            reporting = _role(admin)
            granted = _role(admin)
            for kind, privilege in (("TABLES", "SELECT"), ("FUNCTIONS", "EXECUTE"),
                                    ("SCHEMAS", "USAGE")):  # fmt: skip
                admin.execute(
                    f"ALTER DEFAULT PRIVILEGES GRANT {privilege} ON {kind} TO {reporting}"
                )
        for run in ("fresh", "again"):
            done = psql(target, "-v", f"vault_key_file={key_file}", "-f", str(VAULT_SQL))
            assert done.returncode == 0, done.stderr
            with psycopg.connect(target.dsn, autocommit=True) as admin:
                if run == "fresh":
                    admin.execute("SELECT vault.create_secret('the secret', 'planted')")
                    admin.execute(f"GRANT USAGE ON SCHEMA vault TO {granted}")
                    admin.execute(f"GRANT SELECT ON vault.decrypted_secrets TO {granted}")
        with psycopg.connect(role_dsn(target.dsn, reporting), autocommit=True) as conn:
            schema = error_of(conn, "SELECT * FROM vault.secrets").diag.message_primary
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            # Each object its own defence, as if the schema were granted for another reason.
            admin.execute(f"GRANT USAGE ON SCHEMA vault TO {reporting}")
        refused = []
        with psycopg.connect(role_dsn(target.dsn, reporting), autocommit=True) as conn:
            for statement in ("SELECT decrypted_secret FROM vault.decrypted_secrets",
                              "SELECT * FROM vault._keys()", "SELECT path FROM vault.key_file",
                              "SELECT vault._decrypt_with(s.secret, 'k') FROM vault.secrets s",
                              ):  # fmt: skip
                refused.append(error_of(conn, statement).diag.message_primary)
        with psycopg.connect(role_dsn(target.dsn, granted), autocommit=True) as conn:
            kept = conn.execute("SELECT decrypted_secret FROM vault.decrypted_secrets").fetchall()
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        key_file.unlink(missing_ok=True)
    record(
        "attack",
        "a role the vault's installer gives every new table, function and schema by ALTER "
        "DEFAULT PRIVILEGES reads the view, vault._keys(), vault.key_file",
        f"refused: {refused[0]}; a role granted the view since keeps it over a re-run",
    )
    assert schema == "permission denied for schema vault"
    assert refused == [
        "permission denied for view decrypted_secrets",
        "permission denied for function _keys",
        "permission denied for table key_file",
        "permission denied for table secrets",
    ]
    assert kept == [("the secret",)]


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
def test_vault_sql_creates_pgcrypto_in_no_schema_another_role_owns(server):
    """A role with CREATE on the database (no superuser, not its owner) makes a schema named
    after the superuser that will run vault.sql: first in the default search_path ("$user",
    public), it is where CREATE EXTENSION puts pgcrypto.  As that schema's owner, DROP
    SCHEMA ... CASCADE then took pgcrypto and the vault's functions bound to it: every
    read and write of a secret failed until a superuser ran the script again, which put
    pgcrypto back in whatever schema of that name the role had made by then.  The script
    refuses before creating the extension there."""
    name = f"vaultu_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    key_file = server.base / f"userschema_{uuid.uuid4().hex[:8]}.keys"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        superuser = conn.execute("SELECT current_user").fetchone()[0]
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name}")
        conn.execute(f"GRANT CREATE ON DATABASE {name} TO {role}")
    target = Database(server, name)
    try:
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{superuser}"')
        done = psql(target, "-v", f"vault_key_file={key_file}", "-f", str(VAULT_SQL))
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{superuser}" CASCADE')
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            view = conn.execute(
                "SELECT to_regclass('vault.decrypted_secrets') IS NOT NULL"
            ).fetchone()[0]
            extensions = conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'"
            ).fetchone()[0]
        record(
            "attack",
            "a role with CREATE on the database makes a schema named after the superuser "
            "(first in $user, public) before vault.sql, then DROP SCHEMA CASCADE",
            "refused: " + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:140],
        )
        assert done.returncode != 0, (view, extensions)
        assert "extension pgcrypto is, or would be created, in a schema" in done.stderr
        assert extensions == 0
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")
        key_file.unlink(missing_ok=True)
