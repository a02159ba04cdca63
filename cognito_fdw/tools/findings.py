"""What ``cognito-fdw doctor`` finds, from the answers it got: the facts in them, a fix for
each error, and the report.  Pure (no connection), so it is tested without a server;
:mod:`cognito_fdw.tools.doctor` asks the questions.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from typing import Callable

WRAPPER = "cognito_fdw.CognitoFdw"
OK, INFO, NOTE, WARN, FAIL = "ok", "info", "note", "warn", "FAIL"

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


@dataclass
class Finding:
    status: str
    subject: str
    text: str
    fix: str | None = None


@dataclass
class Report:
    """The findings in the order found; ``echo``, when given, gets each finding's lines as it
    is added, so a slow probe (up to ``--timeout`` each) shows what came before it."""

    findings: list[Finding] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    echo: Callable[[str], None] | None = None

    def add(self, status, subject, text, fix=None) -> Finding:
        finding = Finding(status, subject, text, fix)
        self.extend([finding])
        return finding

    def extend(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.findings.append(finding)
            if self.echo is not None:
                self.echo(self.lines(finding))

    @property
    def failed(self) -> bool:
        return any(f.status == FAIL for f in self.findings)

    @staticmethod
    def lines(f: Finding) -> str:
        text = f"{f.status:<5} {f.subject}: {f.text}"
        return f"{text}\n      fix: {f.fix}" if f.fix else text

    def summary(self) -> str:
        """The request latency and the count of problems: the report's last lines."""
        lines = []
        if self.latencies:
            lines.append(
                f"request latency: median {statistics.median(self.latencies):.0f} ms, "
                f"max {max(self.latencies):.0f} ms per Cognito request "
                f"({len(self.latencies)} probes)"
            )
        problems = sum(f.status == FAIL for f in self.findings)
        lines.append(f"{problems} problem(s) found" if problems else "no problems found")
        return "\n".join(lines)

    def render(self) -> str:
        return "\n".join([*(self.lines(f) for f in self.findings), self.summary()])


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
    wrapper decides it (:func:`cognito_fdw.aws.credentials.resolve`), with no value in it."""
    from cognito_fdw.aws.credentials import resolve
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
    # Multicorn merges the mapping of the querying role (else PUBLIC's) over the server's
    # options; a role with neither reads with the server's options alone.
    if not mappings:
        parts.append(f"no user mapping; credentials: {credential_source(server)}")
    elif "public" not in {user.lower() for user in mappings}:
        parts.append(f"roles without a user mapping: {credential_source(server)}")
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


@dataclass(frozen=True)
class Exposure:
    """What exposes the server to the shapes the guard cannot stop (SECURITY.md "What the
    guard cannot stop"), as doctor read it from the catalogs and settings."""

    tables: int  # Multicorn foreign tables in this database
    auto_explain: list[str]  # where auto_explain is loaded: "session_preload_libraries", ...
    insert_grants: list[tuple[str, str]]  # (table, grantee) granted INSERT, owner aside
    writable: list[str]  # cognito tables with writable 'true'
    max_prepared_transactions: int
    unguarded: list[str]  # Multicorn tables without the guard's COPY FROM trigger
    #: Whether auto_explain.log_min_duration is 0 or more anywhere doctor can see (this
    #: session, a database or role setting): loaded with -1 it explains nothing.
    auto_explain_logs: bool = True
    server_major: int = 15
    #: Who else may COPY FROM into a Multicorn table, superusers aside: (role, how), how being
    #: "owns <table>" or "USAGE on server <name>" (such a role may make a table of its own).
    copy_roles: list[tuple[str, str]] = field(default_factory=list)


def exposure_findings(facts: Exposure) -> list[Finding]:
    """Each setting that lets a role crash or restart the cluster through Multicorn's C
    (docs/multicorn.md H1: EXPLAIN of a by-reference parameter crashes; H12: a non-constant
    value is converted with a wrong type; H13: no BeginForeignInsert, so COPY FROM crashes), and
    what to change."""
    if not facts.tables:
        return []
    found = []
    if facts.auto_explain and not facts.auto_explain_logs:
        found.append(Finding(
            NOTE, "auto_explain",
            f"loaded ({', '.join(facts.auto_explain)}) but logs no plan "
            "(auto_explain.log_min_duration = -1); setting it to 0 or more here would let a "
            "driver's prepared statement crash the server (SECURITY.md)",
        ))  # fmt: skip
    elif facts.auto_explain:
        found.append(Finding(
            FAIL, "auto_explain",
            f"loaded ({', '.join(facts.auto_explain)}) in a database with Multicorn foreign "
            "tables: logging the plan of a driver's prepared statement comparing a column with "
            "an array, jsonb, numeric or uuid parameter crashes the server (SECURITY.md)",
            "remove auto_explain from these settings for this database, or set "
            "auto_explain.log_min_duration = -1 here",
        ))  # fmt: skip
    # PostgreSQL 16's COPY asks Multicorn for its batch size before any trigger fires
    # (docs/multicorn.md H13: no BeginForeignInsert, so COPY FROM crashes): from 16 on the
    # guard's trigger stops no COPY FROM.
    stopped_by_guard = facts.server_major < 16
    where = (
        "where the guard's trigger does not stop it" if stopped_by_guard
        else f"before the guard's trigger fires on PostgreSQL {facts.server_major}"
    )  # fmt: skip
    if facts.insert_grants:
        shown = ", ".join(f"{table} to {grantee}" for table, grantee in facts.insert_grants[:5])
        more = len(facts.insert_grants) - 5
        found.append(Finding(
            WARN, "INSERT",
            f"granted on {shown}{f' and {more} more' if more > 0 else ''}: a COPY FROM into a "
            f"Multicorn foreign table crashes the server {where} (SECURITY.md)",
            "grant INSERT only on a writable group_members table and only to roles you trust "
            "not to restart the cluster (REVOKE INSERT ON ... FROM ...)",
        ))  # fmt: skip
    if facts.copy_roles and not stopped_by_guard:
        shown = ", ".join(f"{role} ({how})" for role, how in facts.copy_roles[:5])
        more = len(facts.copy_roles) - 5
        found.append(Finding(
            WARN, "table owners",
            f"may COPY FROM into a Multicorn foreign table, which crashes the server {where} "
            f"(SECURITY.md): {shown}{f' and {more} more' if more > 0 else ''}",
            "let a role you trust not to restart the cluster own the cognito tables and grant "
            "SELECT on them; REVOKE USAGE ON FOREIGN SERVER ... FROM the others",
        ))  # fmt: skip
    if facts.writable and facts.max_prepared_transactions > 0:
        found.append(Finding(
            WARN, "max_prepared_transactions",
            f"is {facts.max_prepared_transactions} with writable table(s) "
            f"{', '.join(facts.writable[:5])}: Multicorn does not tell the wrapper about "
            "PREPARE TRANSACTION, so the changes of a prepared transaction rolled back are "
            "sent at the backend's next COMMIT (SECURITY.md)",
            "set max_prepared_transactions = 0 (restart), or drop the option writable",
        ))  # fmt: skip
    if facts.unguarded:
        found.append(Finding(
            FAIL, "COPY FROM",
            f"not refused on {', '.join(facts.unguarded[:5])}: the guard's trigger is missing "
            "(a guard installed before it had one), and COPY FROM crashes the server",
            GUARD_INSTALL,
        ))  # fmt: skip
    return found


def options_dict(raw: list[str] | None) -> dict[str, str]:
    return dict(item.split("=", 1) for item in raw or [])


# -- the server's runtime, PL/Python, managed services ------------------------------------------

GATEWAY_DOC = "docs/managed-postgresql.md"

#: A managed service, by a role or setting (prefix) it alone has: (name, roles, settings).
MANAGED_MARKERS = (
    ("Amazon Aurora PostgreSQL", (), ("apg_", "aurora.")),
    ("Amazon RDS for PostgreSQL", ("rds_superuser",), ("rds.",)),
    ("Google Cloud SQL", ("cloudsqlsuperuser",), ("cloudsql.",)),
    ("Azure Database for PostgreSQL", ("azure_pg_admin",), ("azure.",)),
    ("Supabase", ("supabase_admin",), ("supabase.",)),
    ("Neon", ("neon_superuser",), ("neon.",)),
)


def managed_service(roles: set[str], settings: set[str]) -> tuple[str, str] | None:
    """(service, the marker seen) when the roles or settings name a managed service."""
    for service, marker_roles, prefixes in MANAGED_MARKERS:
        for role in marker_roles:
            if role in roles:
                return service, f"role {role}"
        for name in sorted(settings):
            if name.startswith(prefixes):
                return service, f"setting {name}"
    return None


def managed_findings(found: tuple[str, str] | None, multicorn: bool) -> list[Finding]:
    if found is None:
        return []
    service, marker = found
    text = f"this looks like {service} ({marker})"
    if multicorn:
        return [Finding(INFO, "service", text)]
    return [Finding(
        FAIL, "service", f"{text}, which cannot load Multicorn2 (no managed service can)",
        "run the wrapper on a self-managed PostgreSQL (the project's Docker image) as a gateway "
        f"and reach it from here by postgres_fdw or logical replication: {GATEWAY_DOC}",
    )]  # fmt: skip


def runtime_versions(lines: list[str]) -> dict[str, str]:
    """{"cognito_fdw": ..., "Python": ..., "botocore": ...} from EXPLAIN VERBOSE's
    ``Runtime: cognito_fdw 0.1.0, Python 3.11.2, botocore 1.44.8`` line ({} without one)."""
    for line in lines:
        _, found, rest = line.partition("Runtime: ")
        if found:
            return dict(part.strip().rsplit(" ", 1) for part in rest.split(",") if " " in part)
    return {}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:2])


def python_findings(python: str | None, plpython: dict) -> list[Finding]:
    """What the embedded Python's version means for Multicorn2 3.2, and for PL/Python in the
    same database.  ``plpython``: ``installed`` (the extension in this database),
    ``functions`` (how many use it), ``preloaded`` (named in a *_preload_libraries)."""
    findings = []
    version = _version(python) if python else None
    if version and version >= (3, 14):
        findings.append(Finding(
            FAIL, "python", f"Python {python}: Multicorn2 3.2 crashes the backend on any "
            "NOTICE, WARNING or shown DEBUG line of a wrapper (pgsql-io/multicorn2#94)",
            "build Multicorn2 against Python 3.13 or earlier until a release fixes it; "
            "meanwhile keep client_min_messages and log_min_messages at notice/warning",
        ))  # fmt: skip
    used = plpython.get("installed") or plpython.get("functions") or plpython.get("preloaded")
    if not used:
        return findings
    where = ", ".join(
        text for key, text in (
            ("installed", "plpython3u is installed in this database"),
            ("functions", f"{plpython.get('functions')} function(s) use it"),
            ("preloaded", "it is preloaded into every session"),
        ) if plpython.get(key)
    )  # fmt: skip
    move = (
        "keep PL/Python in another database: move its functions there and DROP EXTENSION "
        "plpython3u here (and take it out of *_preload_libraries)"
    )
    if version is None:
        findings.append(Finding(NOTE, "pl/python", f"{where}; with Python 3.12 or later it "
                                "cannot share a database with Multicorn2", move))  # fmt: skip
    elif version >= (3, 12):
        findings.append(Finding(
            FAIL, "pl/python", f"{where}: with Python {python} Multicorn2 and PL/Python cannot "
            "be used in one database (Multicorn2's README, Known Issues)", move,
        ))  # fmt: skip
    else:
        findings.append(Finding(
            NOTE, "pl/python", f"{where}; fine with Python {python}, but not with 3.12 or "
            "later (Multicorn2's README, Known Issues)", move,
        ))  # fmt: skip
    return findings
