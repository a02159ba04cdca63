"""The benchmark: requests and wall time per query shape, on pools of 1,000 and 10,000 users.

Runs a throwaway PostgreSQL with Multicorn2 (as the tier-2 tests do) against moto, prints a
line per case as it goes, and writes BENCHMARKS.md; then sql/sync.sql on a 20,000-user pool
(bench/sync.py).  Usage (about four minutes, most of it seeding, and several more to seed
the sync's pool)::

    python -m bench.run [--moto-url http://127.0.0.1:5000] [--sizes 1000,10000] [--out FILE]
                        [--only latency,crowd]

``--moto-url`` reuses a running moto whose pools ``bench-1000`` ... are already seeded.
``--only`` runs some sections (queries, latency, costs, crowd, hot, startup, memory, sync,
image) and replaces just those in the existing file; ``--hot-seconds`` is how long each way of
the hot paths runs (bench/hot.py; 30 by default; BENCHMARKS.md's figures used 60).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from cognito_fdw.aws.ratelimit import SPACING_SECONDS
from cognito_fdw.tools.devstack import LocalPostgres, MotoServer
from cognito_fdw.tools.host import multicorn_missing, postgres_bindir
from tests.support.proxy import Proxy

from . import hot, memory, quota, sync
from .queries import query_rows, render_queries
from .quota import LATENCY, say
from .stack import KEYS, NO_CACHE, ROOT, cognito_client, connect, ensure_pool

COLUMNS = "username text, sub text, email text, given_name text, status text, enabled boolean"
LOAD = os.getloadavg()
SECTIONS = ("queries", "latency", "costs", "crowd", "hot", "startup", "memory", "sync", "image")
# How each section of BENCHMARKS.md begins (the queries are the part before any "## ").
HEADINGS = {
    "latency": "## Full scan of",
    "costs": "## What it costs besides requests",
    "crowd": f"## {quota.CROWD} sessions scanning at once",
    "hot": "## Hot paths",
    "startup": "## First query on a new connection",
    "memory": f"## Backend memory over {memory.LOOKUPS:,} lookups",
    "sync": "## `sql/sync.sql`",
    "image": "## The Docker image",
}


class Session:
    """A warm connection that reads the wrapper's per-scan request count."""

    def __init__(self, dsn):
        self.conn = connect(dsn)
        self.messages = []
        self.conn.add_notice_handler(lambda d: self.messages.append(d.message_primary or ""))
        self.conn.execute("SET client_min_messages = debug1")

    def run(self, sql, repeat=3):
        """(median seconds, requests of the last run, rows)."""
        times = []
        for _ in range(repeat):
            time.sleep(SPACING_SECONDS)  # each run starts with an empty rate-limit window
            self.messages.clear()
            started = time.perf_counter()
            rows = self.conn.execute(sql).fetchall()
            times.append(time.perf_counter() - started)
        counts = [
            int(m.group(1)) for s in self.messages if (m := re.match(r"cognito_fdw: (\d+) r", s))
        ]
        return statistics.median(times), sum(counts), len(rows)


def create_tables(conn, server, pool_id, endpoint, size, prefix=""):
    """Tables ``<prefix>u<size>`` (the defaults: 8 workers, 25 requests/s), ``..._w4``,
    ``..._seq25`` (one worker) and ``..._seq`` (one worker, rate cap lifted)."""
    conn.execute(
        f"CREATE SERVER {server} FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
        f"'cognito_fdw.CognitoFdw', user_pool_id '{pool_id}', endpoint_url '{endpoint}', "
        f"{NO_CACHE})"
    )
    conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {server} OPTIONS ({KEYS})")
    conn.execute(
        f"CREATE SERVER {server}_uncapped FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
        f"'cognito_fdw.CognitoFdw', user_pool_id '{pool_id}', endpoint_url '{endpoint}', "
        f"max_requests_per_second '1000', {NO_CACHE})"
    )
    conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {server}_uncapped OPTIONS ({KEYS})")
    for suffix, target, options in (
        ("", server, ""),
        ("_w4", server, ", scan_workers '4'"),
        ("_seq25", server, ", scan_workers '1'"),
        ("_seq", f"{server}_uncapped", ", scan_workers '1'"),
    ):
        conn.execute(
            f"CREATE FOREIGN TABLE {prefix}u{size}{suffix} ({COLUMNS}) SERVER {target} "
            f"OPTIONS (object 'users'{options})"
        )


def first_query_overhead(dsn, sql) -> float:
    """Median extra time of a query on a new connection over the same query warm."""
    extra = []
    for _ in range(5):
        started = time.perf_counter()
        conn = connect(dsn)
        connected = time.perf_counter()
        conn.execute(sql).fetchall()
        first = time.perf_counter() - connected
        started = time.perf_counter()
        conn.execute(sql).fetchall()
        warm = time.perf_counter() - started
        conn.close()
        extra.append(first - warm)
    return statistics.median(extra)


def startup_breakdown() -> tuple[float, float]:
    """Seconds to import boto3 and to create a Cognito client, in a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import boto3; i = time.perf_counter() - t; "
        "t = time.perf_counter(); boto3.session.Session(region_name='us-east-1')"
        ".client('cognito-idp', endpoint_url='http://127.0.0.1:1', aws_access_key_id='a', "
        "aws_secret_access_key='b'); print(i, time.perf_counter() - t)"
    )
    runs = [
        [float(x) for x in subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()]
        for _ in range(5)
    ]  # fmt: skip
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def machine(conn) -> list[str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    pg = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
    mc = conn.execute("SELECT extversion FROM pg_extension WHERE extname='multicorn'").fetchone()
    return [
        f"- Machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        f"- {pg}, Multicorn2 {mc[0]}, Python {platform.python_version()}",
        f"- boto3 {version('boto3')}, botocore {version('botocore')}, moto {version('moto')} "
        "(moto_server, one process)",
    ]


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moto-url")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections to run")
    parser.add_argument("--hot-seconds", type=float, default=hot.SECONDS,
                        help="how long each way of the hot section runs")  # fmt: skip
    args = parser.parse_args()
    only = [name for name in args.only.split(",") if name]
    if unknown := set(only) - set(SECTIONS):
        raise SystemExit(f"--only: no section {', '.join(sorted(unknown))}; sections: "
                         f"{', '.join(SECTIONS)}")  # fmt: skip
    missing = multicorn_missing(postgres_bindir())
    if missing:
        raise SystemExit(f"bench needs a local PostgreSQL with Multicorn2: {missing}")
    sizes = [int(s) for s in args.sizes.split(",")]
    small, big = min(sizes), max(sizes)

    moto = None if args.moto_url else MotoServer().start()
    moto_url = args.moto_url or moto.url
    cognito = cognito_client(moto_url)
    pools = {size: ensure_pool(cognito, size) for size in sizes}
    pg = LocalPostgres().start()
    replaying = Proxy(moto_url, LATENCY, replay=True).start()
    live = Proxy(moto_url, LATENCY).start()
    try:
        with connect(pg.dsn) as conn:
            conn.execute("CREATE EXTENSION multicorn")
            for size, pool_id in pools.items():
                create_tables(conn, f"s{size}", pool_id, moto_url, size)
            create_tables(conn, "lat", pools[big], replaying.url, 0, prefix="lat_")
            create_tables(conn, "live", pools[big], live.url, 0, prefix="live_")
            conn.execute(
                "CREATE SERVER crowd FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
                f"'cognito_fdw.CognitoFdw', user_pool_id '{pools[small]}', "
                f"endpoint_url '{live.url}', {NO_CACHE})"
            )
            conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER crowd OPTIONS ({KEYS})")
            conn.execute(
                f"CREATE FOREIGN TABLE crowd ({COLUMNS}) SERVER crowd OPTIONS (object 'users')"
            )
            header = machine(conn)
        sections = run_sections(only, pg.dsn, cognito, pools, replaying, live, header)
        if "hot" in only:
            sections["hot"] = hot.section(pg, cognito, moto_url, args.hot_seconds)
        if "sync" in only:
            say("sync: seeding and syncing the sync's pool")
            sections["sync"] = sync.section(pg.dsn, cognito, moto_url)
        if "image" in only:
            from . import image  # here: only this section needs Docker

            say("image: building docker/Dockerfile on each Docker tier's base")
            sections["image"] = image.section()
    finally:
        replaying.stop()
        live.stop()
        pg.cleanup()
        if moto:
            moto.stop()
    out = Path(args.out)
    partial = set(only) != set(SECTIONS) and out.exists()
    text = splice(out.read_text() if partial else "", sections)
    print(text)
    out.write_text(text)


def run_sections(only, dsn, cognito, pools, replaying, live, header) -> dict[str, list[str]]:
    """The markdown lines of each section in ``only`` (but sync), by section name."""
    session = Session(dsn)
    small, big = min(pools), max(pools)
    sections = {}
    if "queries" in only:
        sections["queries"] = render_queries(header, query_rows(session, cognito, pools))
    if "latency" in only:
        load = os.getloadavg()[0]
        rows = quota.latency_rows(session, replaying, live)
        page_ms = quota.moto_page_ms(cognito, pools[big])
        sections["latency"] = quota.render_latency(rows, big, page_ms, (load, os.getloadavg()[0]))
    if "costs" in only:
        say("costs: billed lookups and JIT")
        sections["costs"] = render_costs(cost_rows(session, live, big, small))
    if "crowd" in only:
        sections["crowd"] = quota.render_crowd(quota.sessions_at_once(dsn, connect, live))
    if "startup" in only:
        say("startup: first query on new connections, import and client times")
        overhead = first_query_overhead(dsn, f"SELECT * FROM u{big} WHERE username = 'bench000001'")
        sections["startup"] = render_startup(overhead, *startup_breakdown())
    if "memory" in only:
        say(f"memory: backend VmRSS over {memory.LOOKUPS:,} lookups, twice")
        # The uncapped server (create_tables): the lookups are not held to 25 a second.
        results = memory.rows(connect, dsn, f"u{small}_seq", small)
        sections["memory"] = memory.render(results, small)
    return sections


def cost_rows(session, proxy, big, small) -> list[tuple[str, str]]:
    """Money and planner cost: AdminGetUser requests (billed as monthly active users) of the
    default username lookups, counted by the proxy, and whether a small pool's scans JIT."""
    names = [f"bench{i:06d}" for i in range(big // 2, big // 2 + 20)]
    session.conn.execute("DROP TABLE IF EXISTS user_keys")
    session.conn.execute("CREATE TEMP TABLE user_keys (username text)")
    for name in names:
        session.conn.execute("INSERT INTO user_keys VALUES (%s)", (name,))
    session.conn.execute("ANALYZE user_keys")
    listed = ", ".join(f"'{n}'" for n in names[:5])
    proxy.clear()
    for sql in (
        f"SELECT * FROM live_u0 WHERE username = '{names[0]}'",
        f"SELECT * FROM live_u0 WHERE username IN ({listed})",
        "SELECT u.* FROM user_keys k JOIN live_u0 u ON u.username = k.username",
    ):
        session.conn.execute(sql).fetchall()
    billed, listed = len(proxy.requests("AdminGetUser")), len(proxy.requests("ListUsers"))
    jit = []
    for sql in (f"SELECT * FROM u{small}", f"SELECT count(*) FROM u{small}"):
        top = session.conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[0][0]
        if "JIT" in top:
            jit.append(f"`{sql}` compiled ({top['JIT']['Timing']['Total']:.0f} ms)")
    return [
        ("default username lookup: AdminGetUser requests (`=`, `IN` of 5, join of 20 names)",
         f"{billed} (ListUsers: {listed})"),
        (f"JIT on a small pool ({small:,} users: full scan, count(*); default settings)",
         "; ".join(jit) or "none"),
    ]  # fmt: skip


def render_costs(costs) -> list[str]:
    out = ["## What it costs besides requests", "", "| what | observed |", "| --- | --- |"]
    return [*out, *(f"| {what} | {observed} |" for what, observed in costs), ""]


def render_startup(overhead, import_s, client_s) -> list[str]:
    return [
        "## First query on a new connection",
        "",
        f"A username lookup on a new connection took {overhead * 1000:.0f} ms more than the "
        "same lookup on a warm one (median of 5). In a fresh interpreter on this machine, "
        f"`import boto3` alone takes {import_s * 1000:.0f} ms and creating the Cognito client "
        f"{client_s * 1000:.0f} ms (median of 5).",
        "",
        f"Load average while the benchmark ran: {LOAD[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} CPUs); other work on the "
        "machine slows every number above.",
        "",
    ]


def splice(existing: str, sections: dict[str, list[str]]) -> str:
    """BENCHMARKS.md with ``sections`` in place of the ones ``existing`` has, and in SECTIONS
    order where it has none (all of them when ``existing`` is empty)."""
    blocks = [("queries", [])]
    for line in existing.splitlines():
        name = next((n for n, heading in HEADINGS.items() if line.startswith(heading)), None)
        if name is not None:
            blocks.append((name, []))
        blocks[-1][1].append(line)
    if not existing:
        blocks = [(name, []) for name in SECTIONS]
    for name in SECTIONS:  # a section new to the file goes before the first that follows it
        if name in sections and name not in [n for n, _ in blocks]:
            later = SECTIONS[SECTIONS.index(name) + 1 :]
            at = next((i for i, (n, _) in enumerate(blocks) if n in later), len(blocks))
            blocks.insert(at, (name, []))
    lines = []
    for name, old in blocks:
        new = sections.get(name)
        if new is not None:
            while new and not new[0]:  # each section ends with a blank line; none leads
                new = new[1:]
        block = old if new is None else new
        if lines and lines[-1] and block:  # a blank line between sections
            lines.append("")
        lines.extend(block)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    main()
