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

The pure part (finding the facts in answers, turning errors into fixes, the report) is
separate from the queries, so it can be tested without a server.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field

WRAPPER = "cognito_fdw.CognitoFdw"
OK, INFO, NOTE, WARN, FAIL = "ok", "info", "note", "warn", "FAIL"

#: Repeats of a successful probe, for the request latency (the first pays for the imports).
LATENCY_SAMPLES = 3

#: Plain-text keys: never printed, and a warning where everyone can read them.
PLAINTEXT_KEYS = ("aws_secret_access_key", "aws_session_token")
GUARD_INSTALL = (
    "install it as a superuser in this database: psql -f sql/guard.sql (sql/cognito_fdw.sql "
    "installs it too)"
)

MULTICORN_HOWTO = (
    "Multicorn2 is built per its README ('Building Multicorn2 against pre-built Postgres', "
    "https://github.com/pgsql-io/multicorn2), against this server's pg_config and Python"
)

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


@dataclass
class Finding:
    status: str
    subject: str
    text: str
    fix: str | None = None


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def add(self, status, subject, text, fix=None) -> Finding:
        finding = Finding(status, subject, text, fix)
        self.findings.append(finding)
        return finding

    @property
    def failed(self) -> bool:
        return any(f.status == FAIL for f in self.findings)

    def render(self) -> str:
        lines = []
        for f in self.findings:
            lines.append(f"{f.status:<5} {f.subject}: {f.text}")
            if f.fix:
                lines.append(f"      fix: {f.fix}")
        if self.latencies:
            lines.append(
                f"request latency: median {statistics.median(self.latencies):.0f} ms, "
                f"max {max(self.latencies):.0f} ms per Cognito request "
                f"({len(self.latencies)} probes)"
            )
        problems = sum(f.status == FAIL for f in self.findings)
        lines.append(f"{problems} problem(s) found" if problems else "no problems found")
        return "\n".join(lines)


# -- the pure part ---------------------------------------------------------------------------


def parse_accounting(notices: list[str]) -> tuple[int, int, float] | None:
    """(requests, rows, ms) from the wrapper's ``cognito_fdw: N requests, R rows, T ms``."""
    for text in reversed(notices):
        m = re.match(r"cognito_fdw: (\d+) requests?, (\d+) rows?, ([\d.]+) ms", text)
        if m:
            return int(m.group(1)), int(m.group(2)), float(m.group(3))
    return None


def import_failure(message: str, detail: str | None) -> tuple[str, str] | None:
    """(what, fix) when an error says the server's Python could not load the wrapper."""
    if not message.startswith("Error in python"):
        return None
    missing = re.search(r"No module named '([^']+)'", detail or "")
    module = missing.group(1).split(".")[0] if missing else None
    where = (
        "the Python PostgreSQL embeds, by its full path (the python3.X whose libpython "
        '`ldd "$(pg_config --pkglibdir)/multicorn.so"` shows, e.g. /usr/bin/python3.11 -m pip; '
        "not a python3 or pip from PATH)"
    )
    if module == "cognito_fdw":
        return (
            "the server's Python cannot import cognito_fdw",
            f"install it into {where} with that Python's pip, or put its directory on the "
            "PYTHONPATH of the PostgreSQL server (e.g. /etc/postgresql/<major>/<cluster>/"
            "environment, or the service's Environment=) and restart PostgreSQL",
        )
    if module in ("boto3", "botocore"):
        return (
            f"the server's Python cannot import {module} (cognito_fdw needs it)",
            f"install boto3 into {where}, or add its site-packages to the server's PYTHONPATH, "
            "and restart PostgreSQL",
        )
    what = message.removeprefix("Error in python: ")
    return (
        f"the server's Python failed to load the wrapper ({what}: {detail or 'no detail'})",
        f"check what {where} can import: cognito_fdw, boto3 and their dependencies",
    )


def probe_failure(
    sqlstate: str | None, message: str, hint: str | None, detail: str | None, timeout: float
) -> tuple[str, str]:
    """(what, fix) for a failed probe query."""
    if sqlstate == "57014":
        return (
            f"no answer within {timeout:g} s",
            "check that the server reaches the endpoint (endpoint_url, or Cognito's in its "
            "region): network, proxy, security groups; then retry",
        )
    loading = import_failure(message, detail)
    if loading:
        return loading
    text = message if not detail else f"{message} ({detail})"
    return text, hint or "see the message; the PostgreSQL log may say more"


def credential_source(options: dict[str, str]) -> str:
    """Where a server's credentials come from for one user mapping's merged options, as the
    wrapper decides it (:func:`cognito_fdw.credentials.resolve`), with no value in it."""
    from cognito_fdw.credentials import resolve
    from cognito_fdw.errors import OptionError
    from cognito_fdw.options import parse_options

    try:
        return resolve(parse_options({**options, "object": "users"})).describe()
    except OptionError as error:
        return f"none usable: {error.message}"


def server_summary(
    name: str, options: dict[str, str], mappings: dict[str, dict[str, str] | None]
) -> tuple[str, list[Finding]]:
    """A line about a server (no secret in it), and warnings about where keys sit.

    ``mappings``: user (or PUBLIC) -> that mapping's options, or None when this role may
    not see them.
    """
    server = {k: v for k, v in options.items() if k != "wrapper"}
    parts = [f"pool {options.get('user_pool_id', '(no user_pool_id)')}"]
    if options.get("region"):
        parts.append(f"region {options['region']}")
    if options.get("endpoint_url"):
        parts.append(f"endpoint {options['endpoint_url']}")
    if not mappings:
        parts.append(f"no user mapping; credentials: {credential_source(server)}")
    for user, mapped in mappings.items():
        source = (
            "(its options are visible only to the server's owner and superusers)"
            if mapped is None
            else credential_source({**server, **mapped})
        )
        parts.append(f"user mapping for {user}: {source}")
    warnings = []
    leaked = [name for name in PLAINTEXT_KEYS if name in options]
    if leaked:
        warnings.append(Finding(
            WARN, f"server {name}",
            f"{', '.join(leaked)} in the server's options, which every role can read "
            "(pg_foreign_server.srvoptions)",
            "move the keys into user mappings (ALTER SERVER ... OPTIONS (DROP ...); "
            "CREATE USER MAPPING ... OPTIONS (aws_access_key_id ..., aws_secret_access_key ...))",
        ))  # fmt: skip
    return ", ".join(parts), warnings


def versions_text(found: dict) -> tuple[str, list[tuple[str, str]]]:
    """A line of versions and paths, and (module, error) for what failed to import."""
    parts = [f"Python {found.get('python')}"]
    errors = []
    for module in ("cognito_fdw", "boto3", "botocore"):
        entry = found.get(module) or {}
        if "error" in entry:
            errors.append((module, entry["error"]))
        else:
            parts.append(f"{module} {entry.get('version')} ({entry.get('path')})")
    return ", ".join(parts), errors


def guard_findings(trigger: tuple[str, list] | None) -> list[Finding]:
    """Findings about the guard's event trigger: (evtenabled, evttags) or None if absent."""
    if trigger is None:
        return [Finding(
            FAIL, "guard", "the cognito_fdw guard is not installed: any role with USAGE on a "
            "server can point it elsewhere or load another Python class (SECURITY.md)",
            GUARD_INSTALL,
        )]  # fmt: skip
    enabled, tags = trigger
    if enabled == "D":
        return [Finding(
            FAIL, "guard", "the cognito_fdw guard is disabled",
            "ALTER EVENT TRIGGER cognito_fdw_guard ENABLE (as a superuser)",
        )]  # fmt: skip
    if tags:
        return [Finding(
            FAIL, "guard", "an older guard that watches only some command tags (ALTER TABLE "
            "walks past it)", GUARD_INSTALL,
        )]  # fmt: skip
    return [Finding(OK, "guard", "installed and enabled, for every DDL command")]


def options_dict(raw: list[str] | None) -> dict[str, str]:
    return dict(item.split("=", 1) for item in raw or [])


# -- the queries -----------------------------------------------------------------------------


def _ident(*names: str) -> str:
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


class Doctor:
    def __init__(self, conn, timeout: float):
        self.conn = conn
        self.timeout = timeout
        self.report = Report()
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
        self.report.findings.extend(guard_findings(trigger))
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
            "SELECT s.oid, s.srvname, s.srvoptions FROM pg_foreign_server s "
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
        for oid, name, raw in servers:
            mappings = {
                user: None if raw_mapping is None else options_dict(raw_mapping)
                for user, raw_mapping in self.conn.execute(
                    "SELECT usename, umoptions FROM pg_user_mappings WHERE srvid = %s ORDER BY 1",
                    [oid],
                )
            }  # fmt: skip
            text, warnings = server_summary(name, options_dict(raw), mappings)
            self.report.add(INFO, f"server {name}", text)
            self.report.findings.extend(warnings)
            tables = self.conn.execute(
                "SELECT n.nspname, c.relname FROM pg_foreign_table t "
                "JOIN pg_class c ON c.oid = t.ftrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE t.ftserver = %s ORDER BY 1, 2",
                [oid],
            ).fetchall()
            if tables:
                for schema, table in tables:
                    self.probe(f"table {schema}.{table}", [], _ident(schema, table))
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


def diagnose(dsn: str, timeout: float = 10.0) -> Report:
    """Connect and check; a report with a FAIL when the connection itself fails."""
    import psycopg

    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as error:
        report = Report()
        report.add(
            FAIL, "connection", str(error).strip().splitlines()[0],
            "check the DSN (host, port, dbname, user, password) and that the server runs",
        )  # fmt: skip
        return report
    with conn:
        return Doctor(conn, timeout).run()
