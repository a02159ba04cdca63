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
3. the server's PostgreSQL, embedded Python and Multicorn2 versions (the Python from the
   wrapper's ``Runtime:`` line in EXPLAIN VERBOSE of a probe: no PL/Python needed, which
   cannot share a database with Multicorn2 on Python 3.12+), what that Python means
   (3.14 crashes Multicorn2 3.2), and PL/Python installed, used or preloaded here;
   before all of it, a managed service (RDS, Aurora, Cloud SQL, Azure, Supabase, Neon) told
   by its roles and settings, which cannot load Multicorn2: the fix is a gateway;
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

import time
from typing import Callable

from cognito_fdw.tools.findings import (
    FAIL,
    GATEWAY_DOC,
    INFO,
    MANAGED_MARKERS,
    MULTICORN_HOWTO,
    NOTE,
    OK,
    WRAPPER,
    Exposure,
    Report,
    exposure_findings,
    guard_findings,
    managed_findings,
    managed_service,
    options_dict,
    parse_accounting,
    probe_failure,
    python_findings,
    runtime_versions,
    server_summary,
)

#: Repeats of a successful probe, for the request latency (the first pays for the imports).
LATENCY_SAMPLES = 3

# -- the queries -----------------------------------------------------------------------------


# The Multicorn foreign tables of this database, as a WITH clause over their OIDs.
_MULTICORN_TABLES = (
    "WITH t AS (SELECT f.ftrelid AS oid FROM pg_foreign_table f "
    "JOIN pg_foreign_server s ON s.oid = f.ftserver "
    "JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw "
    "JOIN pg_proc h ON h.oid = w.fdwhandler WHERE h.proname = 'multicorn_handler')"
)


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
        self.runtime: dict[str, str] = {}  # from the first probe's EXPLAIN VERBOSE
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
        managed = self.managed()
        installed = self.check_multicorn(managed is not None)
        self.report.extend(managed_findings(managed, installed))
        if installed:
            self.check_guard()
            self.check_exposure()
            self.check_import()
            self.check_servers()
            self.check_versions(version)
        return self.report

    def managed(self) -> tuple[str, str] | None:
        roles = [role for _, names, _ in MANAGED_MARKERS for role in names]
        prefixes = [prefix for _, _, names in MANAGED_MARKERS for prefix in names]
        found_roles = {
            r[0]
            for r in self.conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY (%s)", [roles]
            )
        }
        settings = {r[0] for r in self.conn.execute(
            "SELECT name FROM pg_settings WHERE name LIKE ANY (%s)",
            [[prefix + "%" for prefix in prefixes]])}  # fmt: skip
        return managed_service(found_roles, settings)

    def check_multicorn(self, managed: bool) -> bool:
        row = self.conn.execute(
            "SELECT default_version, installed_version FROM pg_available_extensions "
            "WHERE name = 'multicorn'"
        ).fetchone()
        if row is None:
            self.report.add(
                FAIL, "multicorn", "Multicorn2 is not installed in this PostgreSQL",
                f"use a gateway: {GATEWAY_DOC}" if managed
                else f"{MULTICORN_HOWTO}; then CREATE EXTENSION multicorn",
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

    def check_exposure(self) -> None:
        """The settings that let a role crash the server through Multicorn (SECURITY.md)."""
        tables = self.conn.execute(_MULTICORN_TABLES + " SELECT count(*) FROM t").fetchone()[0]
        preloaded = [
            name for name, value in self.conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('shared_preload_libraries', 'session_preload_libraries', "
                "'local_preload_libraries')"
            )
            if "auto_explain" in value
        ]  # fmt: skip
        preloaded += [
            f"{scope} setting" for (scope,) in self.conn.execute(
                "SELECT CASE WHEN setrole = 0 THEN 'database' ELSE 'role ' || "
                "setrole::regrole END FROM pg_db_role_setting WHERE setdatabase IN (0, "
                "(SELECT oid FROM pg_database WHERE datname = current_database())) "
                "AND array_to_string(setconfig, ',') LIKE '%auto_explain%'"
            )
        ]  # fmt: skip
        grants = self.conn.execute(
            _MULTICORN_TABLES + " SELECT t.oid::regclass::text, CASE a.grantee WHEN 0 THEN "
            "'PUBLIC' ELSE a.grantee::regrole::text END FROM t JOIN pg_class c ON c.oid = "
            "t.oid, aclexplode(c.relacl) a WHERE a.privilege_type = 'INSERT' "
            "AND a.grantee <> c.relowner ORDER BY 1, 2"
        ).fetchall()
        writable = [name for (name,) in self.conn.execute(
            _MULTICORN_TABLES + " SELECT t.oid::regclass::text FROM t JOIN pg_foreign_table f "
            "ON f.ftrelid = t.oid WHERE 'writable=true' = ANY(f.ftoptions) ORDER BY 1"
        )]  # fmt: skip
        unguarded = [name for (name,) in self.conn.execute(
            _MULTICORN_TABLES + " SELECT t.oid::regclass::text FROM t WHERE NOT EXISTS ("
            "SELECT FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid "
            "WHERE g.tgrelid = t.oid AND p.proname = 'refuse_copy' AND g.tgenabled <> 'D') "
            "ORDER BY 1"
        )]  # fmt: skip
        # A table's owner has INSERT, and a role with USAGE on a Multicorn server may make a
        # table of its own (superusers may do anything anyway).
        copy_roles = self.conn.execute(
            _MULTICORN_TABLES + " SELECT c.relowner::regrole::text, 'owns ' || "
            "t.oid::regclass::text FROM t JOIN pg_class c ON c.oid = t.oid JOIN pg_roles r "
            "ON r.oid = c.relowner WHERE NOT r.rolsuper UNION ALL SELECT CASE a.grantee "
            "WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, 'USAGE on server ' || "
            "quote_ident(s.srvname) FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w "
            "ON w.oid = s.srvfdw JOIN pg_proc h ON h.oid = w.fdwhandler, "
            "aclexplode(s.srvacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE h.proname = 'multicorn_handler' AND a.privilege_type = 'USAGE' "
            "AND a.grantee <> s.srvowner AND NOT coalesce(r.rolsuper, false) ORDER BY 1, 2"
        ).fetchall()
        prepared = int(self.conn.execute("SHOW max_prepared_transactions").fetchone()[0])
        logs = self.conn.execute(
            "SELECT coalesce(current_setting('auto_explain.log_min_duration', true), '-1') "
            "<> '-1' OR EXISTS (SELECT FROM pg_db_role_setting, unnest(setconfig) c "
            "WHERE c LIKE 'auto\\_explain.log\\_min\\_duration=%' "
            "AND c <> 'auto_explain.log_min_duration=-1')"
        ).fetchone()[0]
        self.report.extend(exposure_findings(
            Exposure(tables, preloaded, grants, writable, prepared, unguarded, logs,
                     self.conn.info.server_version // 10000, copy_roles)
        ))  # fmt: skip

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
        if not self.runtime:
            plan = self._rolled_back([*setup, f"EXPLAIN VERBOSE SELECT * FROM {relation} LIMIT 1"])
            self.runtime = runtime_versions([row[0] for row in plan])
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

    def check_versions(self, postgres: str) -> None:
        """PostgreSQL, Multicorn2 and the embedded Python (from the probes' Runtime line),
        and what they mean with PL/Python in this database."""
        multicorn = self.conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'multicorn'"
        ).fetchone()[0]
        python = self.runtime.get("Python")
        shown = f"Python {python}" if python else "Python not shown (no probe answered)"
        versions = f"PostgreSQL {postgres}, Multicorn2 {multicorn}, {shown}"
        if self.runtime.get("cognito_fdw"):
            versions += (
                f", cognito_fdw {self.runtime['cognito_fdw']}, "
                f"botocore {self.runtime.get('botocore')}"
            )
        self.report.add(OK if python else NOTE, "versions", versions)
        installed, functions, preloaded = self.conn.execute(
            "SELECT EXISTS (SELECT FROM pg_extension WHERE extname LIKE 'plpython%'), "
            "(SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
            " WHERE l.lanname LIKE 'plpython%'), "
            "EXISTS (SELECT FROM pg_settings WHERE name LIKE '%preload_libraries' "
            "        AND setting LIKE '%plpython%')"
        ).fetchone()
        plpython = {"installed": installed, "functions": functions, "preloaded": preloaded}
        self.report.extend(python_findings(python, plpython))


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
