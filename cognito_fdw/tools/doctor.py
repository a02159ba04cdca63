"""``cognito-fdw doctor DSN``: check an installation from the outside, as a client.

It connects like any client (psycopg) and changes nothing: every probe runs in a transaction
that is rolled back, under a ``statement_timeout``. What it checks, in order:

1. the ``multicorn`` extension: available in this PostgreSQL, created in this database;
   and the guard (``sql/guard.sql``): installed, enabled, watching every command, and
   (for a superuser) what ``cognito_fdw_guard.audit()`` finds written past it. Without it
   USAGE on a server is as good as the server's OS user (SECURITY.md), so its absence fails;
2. whether the server's Python imports the wrapper: a ``CREATE SERVER ... (wrapper
   'cognito_fdw.CognitoFdw')`` that is rolled back (Multicorn's validator imports the class,
   and with it boto3); needs USAGE on the multicorn wrapper, else step 4 still shows it;
3. the versions of Python, cognito_fdw, boto3 and botocore the server runs: only observable
   from SQL through ``plpython3u``, which shares the backend's Python with Multicorn; when the
   database has it, a temporary function reports them (rolled back), otherwise doctor says so;
4. every foreign server whose wrapper is cognito_fdw and every foreign table on it: a
   ``SELECT * ... LIMIT 1`` per table (a probe table in ``pg_temp`` for a server without
   tables), timed, with the wrapper's own request accounting (DEBUG1) giving the number of
   Cognito requests and their latency. Its failures are the wrapper's errors, whose HINT
   is the fix.

Doctor runs nothing another role wrote, as the role it connects as (often a superuser):
a rollback does not undo what such code can do (``COPY ... TO PROGRAM``, a sequence, a
notice to another session).  So it probes only tables it can judge safe: owned by itself
or a superuser, on a server owned by itself or a superuser, every column of a base or enum
type (a domain's CHECK, a composite's or range's functions would run as doctor's role).
Any other table or server is read from the catalog only, and the report says so.  Its own
statements run with ``search_path`` ``pg_catalog, pg_temp``, so no role's function or
operator stands in for a built-in one.

The pure part (finding the facts in answers, turning errors into fixes, the report) is
:mod:`cognito_fdw.tools.findings`, tested without a server.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from cognito_fdw.tools.findings import (
    FAIL,
    INFO,
    MULTICORN_HOWTO,
    NOTE,
    OK,
    WRAPPER,
    Report,
    guard_findings,
    import_failure,
    options_dict,
    parse_accounting,
    probe_failure,
    server_summary,
    versions_text,
)

#: Repeats of a successful probe, for the request latency (the first pays for the imports).
LATENCY_SAMPLES = 3

#: Runs inside the server's Python; the answer is one JSON object.
VERSIONS_FUNCTION = r"""
import json, sys
from importlib import metadata
found = {"python": sys.version.split()[0], "executable": sys.executable}
for module, dist in (("cognito_fdw", "cognito-fdw"), ("boto3", "boto3"),
                     ("botocore", "botocore")):
    try:
        imported = __import__(module)
    except Exception as error:
        found[module] = {"error": "%s: %s" % (type(error).__name__, error)}
        continue
    version = getattr(imported, "__version__", None)
    if version is None:
        try:
            version = metadata.version(dist)
        except Exception:
            version = "unknown"
    found[module] = {"version": version, "path": getattr(imported, "__file__", None)}
return json.dumps(found)
"""


# -- the queries -----------------------------------------------------------------------------


def _ident(*names: str) -> str:
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


# Whether an object's owner is the connected role or a superuser: true is safe to run.
_TRUSTED_OWNER = (
    "({owner} = (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user) "
    "OR (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = {owner}))"
)
# The first column of the table (c) whose type is not a base or enum type (an array's
# element type counted), or NULL: reading such a column runs the type's code (a domain's
# CHECK, a composite's columns' domains, a range's functions).
_FOREIGN_CODE = (
    "(SELECT format('%%I (type %%s)', a.attname, ty.oid::regtype) FROM pg_attribute a "
    "JOIN pg_type ty ON ty.oid = a.atttypid "
    "LEFT JOIN pg_type el ON el.oid = ty.typelem AND ty.typcategory = 'A' "
    "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
    "AND (ty.typtype NOT IN ('b', 'e') OR coalesce(el.typtype, 'b') NOT IN ('b', 'e')) "
    "ORDER BY a.attnum LIMIT 1)"
)


class Doctor:
    def __init__(self, conn, timeout: float, report: Report | None = None):
        self.conn = conn
        self.timeout = timeout
        self.report = report or Report()
        self.notices: list[str] = []
        conn.add_notice_handler(lambda diag: self.notices.append(diag.message_primary or ""))

    def _rolled_back(self, statements: list[str]):
        """Run statements in a transaction that is always rolled back; the last one's rows."""
        with self.conn.transaction(force_rollback=True):
            self.conn.execute(f"SET LOCAL statement_timeout = '{int(self.timeout * 1000)}ms'")
            cursor = None
            for statement in statements:
                cursor = self.conn.execute(statement)
            return cursor.fetchall() if cursor and cursor.description else []

    def run(self) -> Report:
        self.conn.execute("SET search_path = pg_catalog, pg_temp")
        info = self.conn.info
        version = self.conn.execute("SHOW server_version").fetchone()[0]
        self.report.add(
            OK, "connection",
            f"{info.user}@{info.host}:{info.port}/{info.dbname}, PostgreSQL {version}",
        )  # fmt: skip
        if self.check_multicorn():
            self.check_guard()
            self.check_import()
            self.check_versions()
            self.check_servers()
        return self.report

    def check_multicorn(self) -> bool:
        row = self.conn.execute(
            "SELECT default_version, installed_version FROM pg_available_extensions "
            "WHERE name = 'multicorn'"
        ).fetchone()
        if row is None:
            self.report.add(
                FAIL, "multicorn", "Multicorn2 is not installed in this PostgreSQL",
                f"{MULTICORN_HOWTO}; then CREATE EXTENSION multicorn",
            )  # fmt: skip
            return False
        available, installed = row
        if installed is None:
            self.report.add(
                FAIL, "multicorn",
                f"available ({available}) but not created in database {self.conn.info.dbname}",
                "CREATE EXTENSION multicorn (as a superuser, in this database)",
            )  # fmt: skip
            return False
        newer = f"; {available} is available (ALTER EXTENSION multicorn UPDATE)"
        self.report.add(
            OK, "multicorn", f"extension {installed}" + (newer if available != installed else "")
        )
        return True

    def check_guard(self) -> None:
        import psycopg

        trigger = self.conn.execute(
            "SELECT evtenabled, evttags FROM pg_event_trigger WHERE evtname = 'cognito_fdw_guard'"
        ).fetchone()
        self.report.extend(guard_findings(trigger))
        if trigger is None or trigger[0] == "D":
            return
        try:
            problems = self._rolled_back(["SELECT * FROM cognito_fdw_guard.audit()"])
        except psycopg.errors.InsufficientPrivilege:
            self.report.add(NOTE, "guard", "objects written before it not audited (needs a "
                            "superuser: SELECT * FROM cognito_fdw_guard.audit())")  # fmt: skip
            return
        for subject, problem in problems:
            self.report.add(FAIL, subject, f"the guard would refuse it now: {problem}",
                            "correct or drop the option it names")  # fmt: skip

    def check_import(self) -> None:
        import psycopg

        try:
            self._rolled_back([
                "CREATE SERVER cognito_fdw_doctor_probe FOREIGN DATA WRAPPER multicorn "
                f"OPTIONS (wrapper '{WRAPPER}')"
            ])  # fmt: skip
        except psycopg.errors.InsufficientPrivilege:
            self.report.add(
                NOTE, "wrapper", "import not probed (needs USAGE on FOREIGN DATA WRAPPER "
                "multicorn); the table probes below show it",
            )  # fmt: skip
            return
        except psycopg.Error as error:
            what, fix = probe_failure(
                error.sqlstate, error.diag.message_primary or str(error),
                error.diag.message_hint, error.diag.message_detail, self.timeout,
            )  # fmt: skip
            self.report.add(FAIL, "wrapper", what, fix)
            return
        self.report.add(OK, "wrapper", f"the server's Python imports {WRAPPER} (and boto3)")

    def check_versions(self) -> None:
        import psycopg

        has_plpython = self.conn.execute(
            "SELECT 1 FROM pg_language WHERE lanname = 'plpython3u'"
        ).fetchone()
        if not has_plpython:
            self.report.add(
                NOTE, "versions",
                "not shown: SQL can see the server's Python only through plpython3u, which "
                "this database does not have (CREATE EXTENSION plpython3u lets doctor show them)",
            )  # fmt: skip
            return
        try:
            rows = self._rolled_back([
                "CREATE FUNCTION pg_temp.cognito_fdw_doctor() RETURNS text LANGUAGE plpython3u "
                f"AS $cognito_fdw_doctor${VERSIONS_FUNCTION}$cognito_fdw_doctor$",
                "SELECT pg_temp.cognito_fdw_doctor()",
            ])  # fmt: skip
        except psycopg.Error as error:
            self.report.add(
                NOTE, "versions", f"not shown: plpython3u refused ({error.diag.message_primary})"
            )
            return
        text, errors = versions_text(json.loads(rows[0][0]))
        self.report.add(OK if not errors else FAIL, "versions", text)
        for module, error in errors:
            _, fix = import_failure("Error in python", f"No module named '{module}'") or ("", "")
            self.report.add(FAIL, module, f"the server's Python cannot import it ({error})", fix)

    def check_servers(self) -> None:
        servers = self.conn.execute(
            "SELECT s.oid, s.srvname, s.srvoptions, "
            + _TRUSTED_OWNER.format(owner="s.srvowner")
            + " FROM pg_foreign_server s "
            "JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw "
            "WHERE w.fdwname = 'multicorn' AND %s = ANY (s.srvoptions) ORDER BY s.srvname",
            [f"wrapper={WRAPPER}"],
        ).fetchall()
        if not servers:
            self.report.add(
                NOTE,
                "servers",
                f"no foreign server uses {WRAPPER} in this database",
                None,
            )
            return
        for oid, name, raw, trusted_server in servers:
            mappings = {
                user: None if raw_mapping is None else options_dict(raw_mapping)
                for user, raw_mapping in self.conn.execute(
                    "SELECT usename, umoptions FROM pg_user_mappings WHERE srvid = %s ORDER BY 1",
                    [oid],
                )
            }  # fmt: skip
            text, warnings = server_summary(name, options_dict(raw), mappings)
            self.report.add(INFO, f"server {name}", text)
            self.report.extend(warnings)
            tables = self.conn.execute(
                "SELECT n.nspname, c.relname, "
                + _TRUSTED_OWNER.format(owner="c.relowner")
                + ", "
                + _FOREIGN_CODE
                + " FROM pg_foreign_table t "
                "JOIN pg_class c ON c.oid = t.ftrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE t.ftserver = %s ORDER BY 1, 2",
                [oid],
            ).fetchall()
            if not trusted_server:
                self.report.add(
                    NOTE, f"server {name}",
                    "not probed: owned by a role that is neither this one nor a superuser "
                    "(doctor runs no other role's objects); connect as its owner to probe it",
                )  # fmt: skip
            elif tables:
                for schema, table, trusted_table, code in tables:
                    subject = f"table {schema}.{table}"
                    if not trusted_table or code:
                        self.report.add(
                            NOTE, subject,
                            "not probed: "
                            + (f"column {code} would run code of another role"
                               if code and trusted_table else
                               "owned by a role that is neither this one nor a superuser")
                            + " (doctor runs no other role's code); connect as its owner to "
                            "probe it",
                        )  # fmt: skip
                        continue
                    self.probe(subject, [], _ident(schema, table))
            else:
                create = (
                    "CREATE FOREIGN TABLE pg_temp.cognito_fdw_doctor_probe (username text) "
                    f"SERVER {_ident(name)} OPTIONS (object 'users')"
                )
                self.probe(
                    f"server {name}", [create], "pg_temp.cognito_fdw_doctor_probe",
                    label="no foreign table; probe table: ",
                )  # fmt: skip

    def probe(self, subject: str, setup: list[str], relation: str, label: str = "") -> None:
        """One row through the wrapper; then LATENCY_SAMPLES more for the request latency."""
        import psycopg

        statements = [
            *setup, "SET LOCAL client_min_messages = debug1", f"SELECT * FROM {relation} LIMIT 1"
        ]  # fmt: skip
        self.notices.clear()
        started = time.perf_counter()
        try:
            self._rolled_back(statements)
        except psycopg.Error as error:
            what, fix = probe_failure(
                error.sqlstate, error.diag.message_primary or str(error),
                error.diag.message_hint, error.diag.message_detail, self.timeout,
            )  # fmt: skip
            self.report.add(FAIL, subject, label + what, fix)
            return
        total = (time.perf_counter() - started) * 1000
        accounting = parse_accounting(self.notices)
        if accounting is None:
            self.report.add(OK, subject, f"{label}answered in {total:.0f} ms")
            return
        requests, rows, ms = accounting
        self.report.add(
            OK, subject,
            f"{label}{rows} row(s) in {requests} request(s), {ms:.0f} ms in Cognito, "
            f"{total:.0f} ms in all (the first query of a session also loads the wrapper)",
        )  # fmt: skip
        for _ in range(LATENCY_SAMPLES):
            self.notices.clear()
            self._rolled_back(statements)
            requests, _, ms = parse_accounting(self.notices) or (0, 0, 0.0)
            if requests:
                self.report.latencies.append(ms / requests)


def diagnose(dsn: str, timeout: float = 10.0, echo: Callable[[str], None] | None = None) -> Report:
    """Connect and check; a report with a FAIL when the connection itself fails.  ``echo``
    gets each finding's lines as it is found (see :class:`Report`)."""
    import psycopg

    report = Report(echo=echo)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as error:
        report.add(
            FAIL, "connection", str(error).strip().splitlines()[0],
            "check the DSN (host, port, dbname, user, password) and that the server runs",
        )  # fmt: skip
        return report
    with conn:
        return Doctor(conn, timeout, report).run()
