"""Tier 2: errors name the foreign table they are about.

Multicorn gives Python no table OID; the wrapper notes its table's OID in ``__init__`` from
PostgreSQL's resource owner (docs/multicorn.md M13: the table from the resource owner) and reads
the name from the catalog (:func:`cognito_fdw.pg.catalog.foreign_table_name`).  Measured here:
several tables in one session, names that need quoting, a table renamed or altered in
mid-session, dropped and created again, a pending cancel while the name is read, and a table
whose name cannot be known (the old wording stays).
"""

from __future__ import annotations

import psycopg
import pytest

from ..support.docker import server_python
from ..support.postgres import create_table, error_of

pytestmark = pytest.mark.server

WRITABLE_HINT = "ALTER FOREIGN TABLE {} OPTIONS (ADD writable 'true'); changes are sent"


@pytest.fixture(scope="module")
def names(setup):
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA tn; CREATE SCHEMA "Odd Schema"')
        for table in ("tn.members", '"Odd Schema"."Members ""ro"""', "tn.other"):
            conn.execute(
                f"CREATE FOREIGN TABLE {table} (group_name text, username text) "
                "SERVER cognito_server OPTIONS (object 'group_members')"
            )
        conn.execute(
            "CREATE FOREIGN TABLE tn.users (username text) "
            "SERVER cognito_server OPTIONS (object 'users')"
        )
    return setup


def insert_hint(db, table) -> str:
    return error_of(db, f"INSERT INTO {table} VALUES ('g', 'u')").diag.message_hint or ""


def test_each_table_is_named_quoted_and_qualified(names, db):
    for table in ("tn.members", '"Odd Schema"."Members ""ro"""', "tn.other", "tn.members"):
        assert insert_hint(db, table).startswith(WRITABLE_HINT.format(table))


def test_a_column_error_names_the_table(names, db):
    create_table(db, "tn.bad_columns", "username text, nope text", object="users")
    with pytest.raises(psycopg.Error) as caught:
        db.execute("SELECT * FROM tn.bad_columns")
    message = caught.value.diag.message_primary
    assert message.startswith("foreign table tn.bad_columns has column that cannot be read")
    assert "\x00" not in message


def test_a_table_renamed_or_altered_in_mid_session_is_named_anew(names, db):
    db.execute(
        "CREATE FOREIGN TABLE tn.moving (group_name text, username text) "
        "SERVER cognito_server OPTIONS (object 'group_members')"
    )
    assert insert_hint(db, "tn.moving").startswith(WRITABLE_HINT.format("tn.moving"))
    db.execute("ALTER FOREIGN TABLE tn.moving RENAME TO moved")
    assert insert_hint(db, "tn.moved").startswith(WRITABLE_HINT.format("tn.moved"))
    db.execute('ALTER FOREIGN TABLE tn.moved SET SCHEMA "Odd Schema"')
    db.execute("ALTER FOREIGN TABLE \"Odd Schema\".moved OPTIONS (ADD read_timeout '20')")
    table = '"Odd Schema".moved'
    assert insert_hint(db, table).startswith(WRITABLE_HINT.format(table))
    with db.transaction():  # altered in the transaction: Multicorn makes a new instance
        db.execute(f"ALTER FOREIGN TABLE {table} OPTIONS (SET read_timeout '21')")
        with pytest.raises(psycopg.Error) as caught, db.transaction():  # a savepoint
            db.execute(f"INSERT INTO {table} VALUES ('g', 'u')")
    assert caught.value.diag.message_hint.startswith(WRITABLE_HINT.format(table))


def test_a_table_dropped_and_created_again_is_named(names, db):
    for _ in range(2):
        db.execute(
            "CREATE FOREIGN TABLE tn.again (group_name text, username text) "
            "SERVER cognito_server OPTIONS (object 'group_members')"
        )
        assert insert_hint(db, "tn.again").startswith(WRITABLE_HINT.format("tn.again"))
        db.execute("DROP FOREIGN TABLE tn.again")
    assert insert_hint(db, "tn.members").startswith(WRITABLE_HINT.format("tn.members"))


def test_the_name_is_read_safely_while_a_cancel_is_pending(names, db):
    """A cancel that arrives while Python runs is pending until PostgreSQL next checks for
    interrupts: the name lookup must not be where it is served (a longjmp through Python
    breaks the backend: docs/multicorn.md H2: check_interrupts longjmps through
    Python).  PL/Python shares Multicorn's interpreter,
    so it can set the cancel flags and read the names of this session's wrapper instances."""
    if server_python() >= (3, 12):
        # Loading plpython3u after Multicorn started Python aborts the backend there:
        # "PyImport_AppendInittab() may not be called after Py_Initialize()".
        pytest.skip("PL/Python beside Multicorn2 aborts the backend on Python 3.12+")
    db.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
    db.execute(
        """
        CREATE FUNCTION pg_temp.names_under_cancel() RETURNS int LANGUAGE plpython3u AS $$
        import ctypes, gc
        from cognito_fdw.pg import catalog
        from cognito_fdw.fdw import CognitoFdw
        instances = [o for o in gc.get_objects() if isinstance(o, CognitoFdw)]
        postgres = ctypes.CDLL(None)
        ctypes.c_int.in_dll(postgres, "QueryCancelPending").value = 1
        ctypes.c_int.in_dll(postgres, "InterruptPending").value = 1
        postgres.InvalidateSystemCaches()  # the lookups read the catalog itself
        GD["names"] = sorted({n for n in map(catalog.foreign_table_name, instances) if n})
        return len(instances)
        $$;
        CREATE FUNCTION pg_temp.names_read() RETURNS text[] LANGUAGE plpython3u
        AS $$ return GD.get("names") $$;
        """
    )
    for table in ("tn.members", "tn.other"):
        insert_hint(db, table)  # this session has their wrapper instances
    with pytest.raises(psycopg.errors.QueryCanceled):
        db.execute("SELECT pg_temp.names_under_cancel()")  # served after the lookups
    names_read = db.execute("SELECT pg_temp.names_read()").fetchone()[0]
    assert {"tn.members", "tn.other"} <= set(names_read)
    # The backend is healthy: Multicorn's Python still works, and names tables.
    assert insert_hint(db, "tn.other").startswith(WRITABLE_HINT.format("tn.other"))
    assert db.execute("SELECT count(*) FROM tn.users").fetchone() == (150,)
