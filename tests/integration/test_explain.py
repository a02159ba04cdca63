"""Tier 2: EXPLAIN says what a scan sends, EXPLAIN ANALYZE what it sent.

EXPLAIN ANALYZE: Multicorn calls the wrapper's explain() after the statement's scans
(``multicornExplainForeignScan`` runs in ExplainPrintPlan, after ExecutorRun and before
ExecutorEnd); the wrapper then adds what those scans sent, by operation, with their retries,
throttled answers and time.  The proxy between the wrapper and moto counts what really went
out, and injects the throttling and errors.  Plain EXPLAIN sends nothing and shows no such
line.  Every table shows the same kinds of lines: the planned requests, the condition
pushed down to Cognito, each condition left to PostgreSQL with why, the request-rate cap.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree

import psycopg
import pytest
import yaml

from ..support.postgres import create_server, explain_lines, explain_text
from ..support.proxy import Fault

pytestmark = pytest.mark.server

ACTUAL = re.compile(
    r"Cognito actual: (\d+) requests? \(([^)]*)\) in (\d+) scans? of this table"
    r"|Cognito actual: (\d+) retr(?:y|ies), (\d+) throttled, (\d+) ms in Cognito requests, "
    r"(\d+) ms waiting for the request-rate cap"
)


@pytest.fixture(scope="module")
def ex(setup, pool, proxy):
    """ex.users, ex.groups, ex.members and ex.pool read the shared pool through the proxy
    (max_attempts 4)."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ex")
        create_server(conn, "ex_srv", pool.pool_id, proxy.url, max_attempts=4)
        for table, columns, thing in (
            ("users", "username text, email text", "users"),
            ("groups", "group_name text, description text, precedence int", "groups"),
            ("members", "group_name text, username text, membership text, email text",
             "group_members"),
            ("pool", "id text, name text", "user_pool"),
        ):  # fmt: skip
            conn.execute(
                f"CREATE FOREIGN TABLE ex.{table} ({columns}) "
                f"SERVER ex_srv OPTIONS (object '{thing}')"
            )
        conn.execute("CREATE TABLE ex.keys (username text)")
        conn.execute("INSERT INTO ex.keys VALUES ('user001'), ('user002'), ('user003')")
        conn.execute("ANALYZE ex.keys")
    return setup


def actual(lines) -> dict:
    """The numbers of the "Cognito actual" lines of one scan node."""
    found = {}
    for line in lines:
        match = ACTUAL.search(line)
        if match and match.group(1):
            found["requests"] = int(match.group(1))
            found["operations"] = dict(
                (name, int(count))
                for name, count in (part.rsplit(" ", 1) for part in match.group(2).split(", "))
            )
            found["scans"] = int(match.group(3))
        elif match:
            found.update(
                retries=int(match.group(4)),
                throttled=int(match.group(5)),
                cognito_ms=int(match.group(6)),
                cap_ms=int(match.group(7)),
            )
    return found


def sent_by_operation(proxy) -> dict:
    counts: dict[str, int] = {}
    for operation, *_ in proxy.requests():
        counts[operation] = counts.get(operation, 0) + 1
    return counts


def analyze(db, proxy, sql, *faults):
    """EXPLAIN ANALYZE's numbers for ``sql``, and what the proxy saw go out during the
    execution (the plan is made first, by a plain EXPLAIN, so that the planner's
    DescribeUserPool is not counted)."""
    explain_lines(db, "EXPLAIN " + sql)
    proxy.arm(*faults)
    lines = explain_lines(db, "EXPLAIN ANALYZE " + sql)
    return actual(lines), sent_by_operation(proxy), lines


def test_analyze_shows_the_requests_made_by_operation(ex, db, proxy):
    numbers, sent, _ = analyze(db, proxy, "SELECT * FROM ex.users")
    assert numbers["operations"] == sent == {"ListUsers": 3}  # 150 users, 60 a page
    assert numbers["requests"] == 3 and numbers["scans"] == 1
    assert numbers["retries"] == 0 and numbers["throttled"] == 0
    numbers, sent, _ = analyze(db, proxy, "SELECT * FROM ex.users WHERE username = 'user007'")
    assert numbers["operations"] == sent == {"ListUsers": 1}


@pytest.mark.parametrize(
    "fault, retries, throttled",
    [
        (Fault("throttle", "ListUsers", skip=1, times=2), 2, 2),
        (Fault("500", "ListUsers", times=1), 1, 0),
    ],
    ids=["throttle", "500"],
)
def test_analyze_counts_retries_and_throttled_answers(ex, db, proxy, fault, retries, throttled):
    numbers, sent, _ = analyze(db, proxy, "SELECT * FROM ex.users", fault)
    assert numbers["requests"] == 3  # calls: each retried one is still one
    assert sent == {"ListUsers": 3 + retries}  # attempts on the wire
    assert (numbers["retries"], numbers["throttled"]) == (retries, throttled)


def test_analyze_shows_the_time_spent_in_cognito(ex, db, proxy):
    fast, _, _ = analyze(db, proxy, "SELECT * FROM ex.users")
    slow, _, _ = analyze(db, proxy, "SELECT * FROM ex.users", Fault("slow", times=-1, seconds=0.2))
    assert slow["cognito_ms"] >= 3 * 200  # three requests, each answered 0.2 s late
    assert fast["cognito_ms"] < slow["cognito_ms"]


def test_analyze_shows_the_time_spent_waiting_for_the_rate_cap(ex, db, proxy, pool):
    db.execute("CREATE SCHEMA IF NOT EXISTS ex_slow")
    create_server(db, "ex_slow_srv", pool.pool_id, proxy.url, max_requests_per_second=1)
    db.execute(
        "CREATE FOREIGN TABLE ex_slow.users (username text) "
        "SERVER ex_slow_srv OPTIONS (object 'users')"
    )
    numbers, _, _ = analyze(db, proxy, "SELECT * FROM ex_slow.users")
    # Three requests at one a second: the later ones wait for their slots, which is not
    # time in Cognito.
    assert numbers["requests"] == 3
    assert numbers["cap_ms"] >= 1000
    assert numbers["cognito_ms"] < numbers["cap_ms"]


def test_analyze_of_a_join_counts_every_loop(ex, db, proxy):
    sql = (
        "SELECT k.username, u.email FROM ex.keys k CROSS JOIN LATERAL "
        "(SELECT * FROM ex.users u WHERE u.username = k.username OFFSET 0) u"
    )
    numbers, sent, lines = analyze(db, proxy, sql)
    assert numbers["scans"] == 3  # one lookup per outer row
    assert numbers["operations"] == sent == {"ListUsers": 3}
    assert any("loops=3" in line for line in lines)


def test_plain_explain_sends_nothing_and_shows_no_actual_line(ex, db, proxy):
    analyze(db, proxy, "SELECT * FROM ex.users")  # a scan just before, in this session
    proxy.arm()
    lines = explain_lines(db, "EXPLAIN SELECT * FROM ex.users WHERE username = 'user007'")
    assert not any("Cognito actual" in line for line in lines)
    assert proxy.requests("ListUsers") == []
    # Nor after a statement that failed mid-scan (Multicorn never ends its scans).
    with pytest.raises(psycopg.Error):
        db.execute("SELECT username, 1 / (length(username) - 7) FROM ex.users")
    assert not any(
        "Cognito actual" in line for line in explain_lines(db, "EXPLAIN SELECT * FROM ex.users")
    )


def test_a_node_that_never_ran_shows_no_actual_line(ex, db, proxy):
    sql = "SELECT * FROM ex.keys k JOIN ex.users u ON u.username = k.username WHERE false"
    lines = explain_lines(db, "EXPLAIN ANALYZE " + sql)
    assert not any("Cognito actual" in line for line in lines)


# -- every table shows what is pushed and what is left ------------------------------------


def test_groups_explain_shows_pushed_and_left_conditions(ex, db):
    text = explain_text(
        db,
        "EXPLAIN SELECT * FROM ex.groups WHERE group_name IN ('admins', 'staff') "
        "AND description LIKE 'the%' AND precedence > 0",
    )
    assert "Cognito: GetGroup for 2 group(s), 2 request(s)" in text
    assert "Cognito: pushed down: group_name = ANY ('admins', 'staff')" in text
    assert "left to PostgreSQL: description LIKE 'the%': Cognito finds groups by group_name" in text
    assert "left to PostgreSQL: precedence > " in text
    assert "Cognito: at most 25 requests/s" in text
    text = explain_text(db, "EXPLAIN SELECT * FROM ex.groups WHERE group_name LIKE 'a%'")
    assert "Cognito: ListGroups, page size 60" in text and "pushed down" not in text
    assert "group_name LIKE 'a%': Cognito has no such search: only = and IN/= ANY" in text


def test_group_members_explain_shows_pushed_and_left_conditions(ex, db):
    text = explain_text(
        db,
        "EXPLAIN SELECT * FROM ex.members WHERE username = 'alice' AND group_name = 'admins' "
        "AND email LIKE 'a%'",
    )
    assert "Cognito: AdminListGroupsForUser for 1 user(s)" in text
    assert 'Cognito: ListUsers Filter: username = "alice"' in text  # the user columns
    assert "Cognito: pushed down: username = 'alice'" in text
    assert (
        "left to PostgreSQL: group_name = 'admins': one condition is sent to Cognito per "
        "scan, and a more selective one was"
    ) in text
    assert (
        "left to PostgreSQL: email LIKE 'a%': Cognito finds memberships by membership, "
        "username and group_name only"
    ) in text
    assert "Cognito: at most 25 requests/s" in text


def test_user_pool_explain_leaves_every_condition_to_postgresql(ex, db):
    text = explain_text(db, "EXPLAIN SELECT * FROM ex.pool WHERE name = 'x'")
    assert "Cognito: DescribeUserPool, 1 request" in text
    assert "left to PostgreSQL: name = 'x': the pool is one row, read whole" in text
    assert "Cognito: at most 25 requests/s" in text


@pytest.mark.parametrize("table", ["ex.users", "ex.groups", "ex.members", "ex.pool"])
def test_explain_verbose_names_the_pool_and_the_credentials_on_every_table(ex, db, table):
    text = explain_text(db, f"EXPLAIN VERBOSE SELECT * FROM {table}")
    assert "Cognito: region us-east-1, user pool " in text
    assert "Cognito: credentials from access keys in the options" in text
    assert "testing-secret" not in text


def multicorn_values(document) -> list[str]:
    """Every "Multicorn" value of a parsed JSON or YAML plan, depth first."""
    if isinstance(document, dict):
        found = [document["Multicorn"]] if "Multicorn" in document else []
        return found + [v for value in document.values() for v in multicorn_values(value)]
    if isinstance(document, list):
        return [v for item in document for v in multicorn_values(item)]
    return []


@pytest.mark.parametrize("analyze", [False, True])
def test_every_explain_format_parses_with_every_wrapper_line(ex, db, proxy, analyze):
    # docs/multicorn.md M14: JSON and YAML kept only the last of the repeated key.
    sql = "SELECT * FROM ex.users WHERE username = 'user001' AND email LIKE '%x'"
    options = "ANALYZE, VERBOSE, " if analyze else "VERBOSE, "
    text = "\n".join(explain_lines(db, f"EXPLAIN ({options}FORMAT TEXT) {sql}"))
    lines = [line.strip().removeprefix("Multicorn: ") for line in text.splitlines()]
    # Every line of the wrapper's: Cognito's, and VERBOSE's runtime versions (doctor reads them).
    wanted = [line for line in lines if line.startswith(("Cognito", "Runtime: cognito_fdw"))]
    assert any(line.startswith("Runtime: cognito_fdw") for line in wanted)
    assert any("pushed down: username = 'user001'" in line for line in wanted)
    assert any("left to PostgreSQL: email LIKE '%x'" in line for line in wanted)
    assert any(line.startswith("Cognito: credentials from") for line in wanted)
    assert any(line.startswith("Cognito actual") for line in wanted) == analyze
    parsed = {
        "JSON": lambda out: out,  # psycopg parses json itself
        "YAML": yaml.safe_load,
        "XML": lambda out: {"Multicorn": [
            e.text for e in ElementTree.fromstring(out).iter() if e.tag.endswith("Multicorn")
        ][0]},
    }  # fmt: skip
    for name, parse in parsed.items():
        (value,) = multicorn_values(
            parse(db.execute(f"EXPLAIN ({options}FORMAT {name}) {sql}").fetchone()[0])
        )
        got = [line.strip() for line in value.splitlines()]
        assert [line for line in got if not line.startswith("Cognito actual")] == [
            line for line in wanted if not line.startswith("Cognito actual")
        ], name
        assert any(line.startswith("Cognito actual") for line in got) == analyze


def test_a_generic_limit_reports_the_requests_that_went_out(ex, db, proxy):
    # A LIMIT $1 is not pushed: the worker reads a page ahead, and a page whose request was
    # still waiting for the rate cap when the scan ended was never sent.
    db.execute("SET plan_cache_mode = force_generic_plan")
    db.execute("PREPARE lim(int) AS SELECT username FROM ex.users LIMIT $1")
    try:
        for _ in range(3):
            numbers, _, _ = analyze(db, proxy, "EXECUTE lim(1)")
            # A request the worker began to send as the scan ended goes out when the backend
            # next runs Python (docs/multicorn.md M8: threads run only while the backend is in
            # Python).
            db.execute("SELECT count(*) FROM ex.pool").fetchone()
            sent = {k: v for k, v in sent_by_operation(proxy).items() if k == "ListUsers"}
            assert numbers["operations"] == sent and numbers["requests"] in (1, 2)
    finally:
        db.execute("DEALLOCATE lim")
        db.execute("RESET plan_cache_mode")
