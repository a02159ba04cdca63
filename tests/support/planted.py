"""Hostile functions and operators for every name a sql/ script calls, planted where other
roles can create objects (schema public, the session's pg_temp), to show the script and its
functions never call them when a superuser runs them.

The names are read from the script itself (every ``name(`` and every operator symbol in
it), never picked by hand; each is planted with many argument types, so that an overload
more exact than pg_catalog's (``cardinality(text[])`` against ``cardinality(anyarray)``)
is among them; each catalog type the script names (``text``, ``uuid``) is planted as a
domain of that name whose CHECK counts.  Every planted object advances the sequence
``public.planted_hits`` (a sequence, so a rollback does not hide a call) and runs as its
caller.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import tempfile
import uuid
from pathlib import Path

import psycopg

HITS = "public.planted_hits"

# Argument lists planted for every called name.
_ONE = ["text", "text[]", "integer", "bigint", "numeric", "uuid", "timestamptz", "interval",
        "bytea", "boolean", "name", "regclass", "json", "jsonb", "double precision", "oid",
        "\"char\"", "anyelement", "anyarray"]  # fmt: skip
SIGNATURES = (
    [[]]
    + [[t] for t in _ONE]
    + [["text"] * n for n in (2, 3, 4, 5)]
    + [["text", t] for t in _ONE if t != "text"]
    + [[t, "text"] for t in _ONE if t != "text"]
    + [["bytea", "text", "text"], ["text", "name", "text", "text"], ["uuid", "text"],
       ["text", "text", "boolean"], ["timestamptz", "timestamptz"]]
)  # fmt: skip
# Operand types of every operator planted (integer[]: pg_catalog's || takes anycompatiblearray).
OPERANDS = ["text", "text[]", "integer", "integer[]", "bigint", "numeric", "uuid", "timestamptz",
            "bytea", "boolean", "name", "\"char\"", "interval", "double precision"]  # fmt: skip

_COMMENT = re.compile(r"--[^\n]*")
_CALL = re.compile(r"(?:\b([A-Za-z_]\w*)\.)?\b([A-Za-z_]\w*)\s*\(")
_OPERATOR = re.compile(r"[-+*/<>=~!@#%^&|`?]+")


def called_names(script: Path) -> set[str]:
    """Every unqualified (or pg_catalog-qualified) name the script writes as a call."""
    text = _COMMENT.sub("", script.read_text())
    return {name.lower() for schema, name in _CALL.findall(text) if schema in ("", "pg_catalog")}


# Operators written as words.
_WORDS = {"like": ("~~", "!~~"), "ilike": ("~~*", "!~~*"), "between": ("<=", ">="),
          "distinct": ("=", "<>")}  # fmt: skip


def operators(script: Path) -> set[str]:
    """Every operator symbol the script writes, and those its words stand for (LIKE)."""
    text = _COMMENT.sub("", script.read_text())
    found = {op for op in _OPERATOR.findall(text) if op not in ("=>", "*/", "/*")}
    for word, symbols in _WORDS.items():
        if re.search(rf"\b{word}\b", text, re.IGNORECASE):
            found.update(symbols)
    return found


# pg_catalog's type names that are not SQL keywords (``integer``, ``bigint``, ``boolean``
# always name pg_catalog's type): written unqualified, each is looked up in the search_path,
# where pg_temp comes first unless listed.
CATALOG_TYPES = ("text", "timestamptz", "uuid", "json", "jsonb", "bytea", "oid", "name",
                 "regclass", "regrole", "regprocedure", "regnamespace", "int2", "int4",
                 "int8", "float8", "bool", "varchar", "citext")  # fmt: skip


def type_names(script: Path) -> set[str]:
    """Every name of :data:`CATALOG_TYPES` the script writes (as a type or otherwise)."""
    text = _COMMENT.sub("", script.read_text()).lower()
    words = set(re.findall(r"[a-z_][a-z0-9_]*", text))
    return {name for name in CATALOG_TYPES if name in words}


def relations(script: Path) -> set[str]:
    """Every unqualified relation name after FROM or JOIN (catalogs, mostly)."""
    text = _COMMENT.sub("", script.read_text())
    return {
        name.lower()
        for name in re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_]\w*)\b(?!\s*[.(])", text, re.I)
    }


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plant_statements(scripts: list[Path], schema: str) -> list[str]:
    """CREATE statements planting every name and operator of ``scripts`` in ``schema``
    (``public`` or ``pg_temp``); some fail (a name no function may have, an operator
    PostgreSQL reserves): each is meant to run on its own."""
    names = set().union(*(called_names(s) for s in scripts))
    symbols = set().union(*(operators(s) for s in scripts))
    statements = []
    for name in sorted(names):
        for args in SIGNATURES:
            returns = "anyelement" if "anyelement" in args else "text"
            listed = ", ".join(args)
            statements.append(
                f"CREATE FUNCTION {schema}.{_ident(name)}({listed}) RETURNS {returns} "
                f"LANGUAGE plpgsql AS {_body(f'{name}({listed})')}"
            )
    for number, (left, right) in enumerate(itertools.product(OPERANDS, repeat=2)):
        function = f"{schema}.planted_op_{number}"
        statements.append(
            f"CREATE FUNCTION {function}({left}, {right}) RETURNS boolean LANGUAGE plpgsql "
            f"AS {_body(f'operator({left}, {right})')}"
        )
        statements.extend(
            f"CREATE OPERATOR {schema}.{symbol} (LEFTARG = {left}, RIGHTARG = {right}, "
            f"FUNCTION = {function})"
            for symbol in sorted(symbols)
        )
    # Last: in the session's own pg_temp a type is found before pg_catalog's, and the
    # statements above are written with the catalog's.  A domain of the catalog's type whose
    # CHECK counts: a variable, column or cast declared with the bare name runs it.
    for name in sorted(set().union(*(type_names(s) for s in scripts))):
        check = f"{schema}.planted_type_{name}"
        statements.append(
            f"CREATE FUNCTION {check}() RETURNS boolean LANGUAGE plpgsql AS {_body(f'type {name}')}"
        )
        statements.append(
            f"CREATE DOMAIN {schema}.{_ident(name)} AS pg_catalog.{name} CHECK ({check}())"
        )
    return statements


def _body(what: str) -> str:
    """Counts the call, says which it was (a WARNING), returns NULL."""
    return (
        f"$planted$BEGIN PERFORM nextval('{HITS}'); RAISE WARNING 'planted % called by %', "
        f"'{what}', current_user; RETURN NULL; END$planted$"
    )


def plant(conn, statements: list[str]) -> int:
    """Run each statement in a savepoint of its own on ``conn`` (in a transaction); how
    many succeeded."""
    planted = 0
    for statement in statements:
        try:
            with conn.transaction():
                conn.execute(statement)
            planted += 1
        except Exception:  # noqa: BLE001 - a name or operator PostgreSQL does not allow
            continue
    return planted


def hits(conn) -> int:
    last, called = conn.execute(f"SELECT last_value, is_called FROM {HITS}").fetchone()
    return last if called else 0


@dataclasses.dataclass
class Run:
    planted: int  # functions and operators planted in public
    control: int  # calls the control reached, before the run
    calls: int  # planted calls the run made
    stderr: str

    def called(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "planted" in line]


def superuser_run(
    target, script: Path, calls: str, public_first: bool, *psql_args: str, also: tuple = ()
) -> Run:
    """On database ``target`` (``.dsn``, ``.bindir``): a new role with CREATE on public
    plants every name and operator of ``script`` (and of the scripts ``also`` names, which
    it includes) there; a superuser's psql session then
    plants them in its own pg_temp too (with temporary views named after the relations
    the script reads), runs ``script`` (with ``psql_args``) and then, in a session of its
    own planted the same way, ``calls``, with its search_path as it comes or, with
    ``public_first``, ``public, pg_catalog``."""
    from .postgres import psql, role_dsn

    role = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    with psycopg.connect(role_dsn(target.dsn, role)) as hostile:
        hostile.execute(f"CREATE SEQUENCE {HITS}")
        hostile.execute(f"GRANT USAGE, UPDATE, SELECT ON SEQUENCE {HITS} TO PUBLIC")
        planted = plant(hostile, plant_statements([script, *also], "public"))
        hostile.commit()
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        # The control: with public first, a planted function is what a call reaches.
        conn.execute("SET search_path = public, pg_catalog")
        conn.execute("SELECT format('%s', 'x'::text)")  # both scripts call format()
        control = hits(conn)
    path = "SET search_path = public, pg_catalog;\n" if public_first else ""
    with tempfile.TemporaryDirectory() as directory:
        temp = Path(directory) / "temp.sql"
        temp.write_text(
            "\\set ON_ERROR_STOP 0\n"
            + "".join(f"{s};\n" for s in plant_statements([script, *also], "pg_temp"))
            + "".join(
                f"CREATE TEMP VIEW {r} AS SELECT * FROM pg_catalog.{r} WHERE false;\n"
                for r in sorted(set().union(*(relations(s) for s in (script, *also))))
            )
            + path
            + "\\set ON_ERROR_STOP 1\n"
        )
        after = Path(directory) / "calls.sql"
        after.write_text(path + calls)
        os.chmod(directory, 0o755)  # psql runs as the server's OS user
        for file in (temp, after):
            os.chmod(file, 0o644)
        # The calls in a session of their own, as a superuser (or pg_cron) makes them later:
        # in the installing session PL/pgSQL would reuse the bodies CREATE compiled (with
        # the script's search_path) and never resolve a name with the caller's.
        install = psql(target, *psql_args, "-f", str(temp), "-f", str(script))
        assert install.returncode == 0, [
            x for x in install.stderr.splitlines() if "temp.sql" not in x
        ]
        done = psql(target, "-f", str(temp), "-f", str(after))
        assert done.returncode == 0, [x for x in done.stderr.splitlines() if "temp.sql" not in x]
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        total = hits(conn)
    return Run(planted, control, total - control, install.stderr + done.stderr)


def preowned_schema_run(
    server, script: Path, schema: str, *psql_args: str, then: str = "", counted: str = ""
):
    """A database of its own, owned by a new role that is no superuser (so it may CREATE
    schemas there), which makes ``schema`` first (and runs ``then``); a superuser then runs
    ``script`` in it.  The psql run, and how many functions schema ``counted`` (default
    ``schema``) holds after it."""
    from .postgres import Database, psql, role_dsn

    role = f"r_{uuid.uuid4().hex[:8]}"
    name = f"owned_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    target = Database(server, name)
    try:
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as owner:
            owner.execute(f"CREATE SCHEMA {schema}")
            if then:
                owner.execute(then)
        done = psql(target, *psql_args, "-f", str(script))
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            functions = conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
                "ON n.oid = p.pronamespace WHERE n.nspname = %s",
                (counted or schema,),
            ).fetchone()[0]
        return done, functions
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")
