"""The benchmark: requests and wall time per query shape, on pools of 1,000 and 10,000 users.

Runs a throwaway PostgreSQL with Multicorn2 (as the tier-2 tests do) against moto, prints a
table and writes BENCHMARKS.md; then sql/sync.sql on a 20,000-user pool (bench/sync.py).
Usage (about four minutes, most of it seeding, and several more to seed the sync's pool)::

    python -m bench.run [--moto-url http://127.0.0.1:5000] [--sizes 1000,10000] [--out FILE]

``--moto-url`` reuses a running moto whose pools ``bench-1000`` ... are already seeded.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

import boto3
import botocore.config
import psycopg

from cognito_fdw.ratelimit import SPACING_SECONDS
from cognito_fdw.tools.devstack import LocalPostgres, MotoServer, seed_users
from cognito_fdw.tools.host import multicorn_missing, postgres_bindir

from .proxy import DelayingProxy

REGION = "us-east-1"
KEYS = "aws_access_key_id 'AKIDBENCH', aws_secret_access_key 'bench-secret'"
COLUMNS = "username text, sub text, email text, given_name text, status text, enabled boolean"
LATENCY = 0.1
CROWD = 8  # sessions scanning at once against one account's budget
ROOT = Path(__file__).resolve().parent.parent
LOAD = os.getloadavg()


def connect(dsn, attempts=100):
    """A connection, once the freshly started server accepts them."""
    for attempt in range(attempts):
        try:
            return psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


def cognito_client(url):
    return boto3.client(
        "cognito-idp", region_name=REGION, endpoint_url=url,
        aws_access_key_id="AKIDBENCH", aws_secret_access_key="bench-secret",
        config=botocore.config.Config(max_pool_connections=32),
    )  # fmt: skip


def ensure_pool(cognito, size: int) -> str:
    """The pool ``bench-<size>``, seeded once; an emulator that has it is reused."""
    name = f"bench-{size}"
    for pool in cognito.list_user_pools(MaxResults=60)["UserPools"]:
        if pool["Name"] == name:
            described = cognito.describe_user_pool(UserPoolId=pool["Id"])["UserPool"]
            if described.get("EstimatedNumberOfUsers") == size:
                return pool["Id"]
    pool_id = cognito.create_user_pool(PoolName=name)["UserPool"]["Id"]
    started = time.monotonic()
    seed_users(cognito, pool_id, size)
    print(f"seeded {name} in {time.monotonic() - started:.0f} s")
    return pool_id


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


def create_tables(conn, server, pool_id, endpoint, size):
    conn.execute(
        f"CREATE SERVER {server} FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
        f"'cognito_fdw.CognitoFdw', user_pool_id '{pool_id}', endpoint_url '{endpoint}')"
    )
    conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {server} OPTIONS ({KEYS})")
    for suffix, options in (
        ("", ""),  # the defaults: 4 workers, 25 requests/s
        ("_seq", ", scan_workers '1', max_requests_per_second '1000'"),
        ("_seq25", ", scan_workers '1'"),
    ):
        conn.execute(
            f"CREATE FOREIGN TABLE u{size}{suffix} ({COLUMNS}) SERVER {server} "
            f"OPTIONS (object 'users'{options})"
        )


def raw_boto3_scan(cognito, pool_id) -> float:
    started = time.perf_counter()
    users = 0
    paginator = cognito.get_paginator("list_users")
    for page in paginator.paginate(UserPoolId=pool_id, PaginationConfig={"PageSize": 60}):
        users += len(page["Users"])
    return time.perf_counter() - started


def compare_sequential(session, cognito, pool_id, size, repeat=3):
    """The sequential full scan against raw boto3 paging, run alternately (a busy machine
    then slows both alike), medians of ``repeat``."""
    wrapper, raw = [], []
    for _ in range(repeat):
        seconds, requests, count = session.run(f"SELECT * FROM u{size}_seq", repeat=1)
        wrapper.append(seconds)
        raw.append(raw_boto3_scan(cognito, pool_id))
    return [
        (size, "full scan, sequential (rate cap lifted)", count, requests,
         statistics.median(wrapper)),
        (size, "raw boto3 paging of the same pool", size, math.ceil(size / 60),
         statistics.median(raw)),
    ]  # fmt: skip


def shapes(size, cognito, pool_id):
    middle = f"bench{size // 2:06d}"
    sub = next(
        a["Value"]
        for a in cognito.admin_get_user(UserPoolId=pool_id, Username=middle)["UserAttributes"]
        if a["Name"] == "sub"
    )
    five = ", ".join(f"'bench{i:06d}'" for i in range(size // 2, size // 2 + 5))
    t = f"u{size}"
    return [
        ("full scan (4 workers, 25/s)", f"SELECT * FROM {t}", 1),
        ("count(*)", f"SELECT count(*) FROM {t}", 1),
        ("lookup by email", f"SELECT * FROM {t} WHERE email = '{middle}@example.com'", 5),
        ("lookup by username", f"SELECT * FROM {t} WHERE username = '{middle}'", 5),
        ("lookup on sub (1 request)", f"SELECT * FROM {t} WHERE sub = '{sub}'", 5),
        ("LIKE prefix (10 users)", f"SELECT * FROM {t} WHERE username LIKE '{middle[:-1]}%'", 5),
        ("IN of 5", f"SELECT * FROM {t} WHERE username IN ({five})", 5),
        ("LIMIT 10", f"SELECT * FROM {t} LIMIT 10", 5),
        ("join on sub: 20 local rows, 10 distinct keys (≤ 1 request per distinct key)",
         f"SELECT u.* FROM subs s JOIN {t} u ON u.sub = s.sub", 3),
        ("NULL keys: requests (join of 20 NULL usernames)",
         f"SELECT u.* FROM null_keys k JOIN {t} u ON u.username = k.username", 3),
        ("NULL keys: requests (= ANY(NULL::text[]))",
         f"SELECT count(*) FROM {t} WHERE username = ANY(NULL::text[])", 3),
    ]  # fmt: skip


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
    args = parser.parse_args()
    missing = multicorn_missing(postgres_bindir())
    if missing:
        raise SystemExit(f"bench needs a local PostgreSQL with Multicorn2: {missing}")
    sizes = [int(s) for s in args.sizes.split(",")]

    moto = None if args.moto_url else MotoServer().start()
    moto_url = args.moto_url or moto.url
    cognito = cognito_client(moto_url)
    pools = {size: ensure_pool(cognito, size) for size in sizes}
    pg = LocalPostgres().start()
    proxy = DelayingProxy(moto_url, LATENCY).start()
    try:
        with connect(pg.dsn) as conn:
            conn.execute("CREATE EXTENSION multicorn")
            for size, pool_id in pools.items():
                create_tables(conn, f"s{size}", pool_id, moto_url, size)
            big = max(sizes)
            create_tables(conn, "lat", pools[big], proxy.url, 0)
            conn.execute(
                "CREATE SERVER crowd FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
                f"'cognito_fdw.CognitoFdw', user_pool_id '{pools[min(sizes)]}', "
                f"endpoint_url '{proxy.url}')"
            )
            conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER crowd OPTIONS ({KEYS})")
            conn.execute(
                f"CREATE FOREIGN TABLE crowd ({COLUMNS}) SERVER crowd OPTIONS (object 'users')"
            )
            header = machine(conn)
        report = run_all(pg.dsn, cognito, pools, proxy, big)
        from . import sync  # here: bench.sync imports this module's helpers

        sync_lines = sync.section(pg.dsn, cognito, moto_url)
    finally:
        proxy.stop()
        pg.cleanup()
        if moto:
            moto.stop()
    text = render(header, report) + "\n".join(sync_lines)
    print(text)
    Path(args.out).write_text(text)


def run_all(dsn, cognito, pools, proxy, big):
    session = Session(dsn)
    rows = []
    for size, pool_id in pools.items():
        subs = [
            next(a["Value"] for a in u["Attributes"] if a["Name"] == "sub")
            for u in cognito.list_users(UserPoolId=pool_id, Limit=10)["Users"]
        ]
        session.conn.execute("DROP TABLE IF EXISTS subs")
        session.conn.execute("CREATE TEMP TABLE subs (sub text)")
        for sub in subs * 2:  # text, as IMPORT FOREIGN SCHEMA declares sub
            session.conn.execute("INSERT INTO subs VALUES (%s)", (sub,))
        session.conn.execute("ANALYZE subs")
        session.conn.execute("DROP TABLE IF EXISTS null_keys")
        session.conn.execute("CREATE TEMP TABLE null_keys AS SELECT NULL::text AS username")
        session.conn.execute("INSERT INTO null_keys SELECT NULL FROM generate_series(2, 20)")
        session.conn.execute("ANALYZE null_keys")
        session.run(f"SELECT * FROM u{size} WHERE username = 'warm-up'", repeat=1)
        for name, sql, repeat in shapes(size, cognito, pool_id):
            seconds, requests, count = session.run(sql, repeat)
            rows.append((size, name, count, requests, seconds))
        rows.extend(compare_sequential(session, cognito, pool_id, size))
    latency = []
    for name, table in (("sequential paging", "u0_seq25"), ("concurrent, 4 workers", "u0")):
        proxy.clear()
        seconds, requests, count = session.run(f"SELECT count(*) FROM {table}", repeat=1)
        latency.append((name, requests, seconds, proxy.max_per_second("ListUsers")))
    costs = cost_rows(session, proxy, big, min(pools))
    crowd = sessions_at_once(dsn, proxy, CROWD)
    overhead = first_query_overhead(dsn, f"SELECT * FROM u{big} WHERE username = 'bench000001'")
    return rows, latency, costs, crowd, (overhead, *startup_breakdown()), big


def sessions_at_once(dsn, proxy, sessions):
    """``sessions`` connections scan the small pool at once through the proxy:
    (users each counted, ListUsers requests, seconds, most requests in any one second)."""
    conns = [connect(dsn) for _ in range(sessions)]
    for conn in conns:  # the wrapper loaded and the pool described before the clock starts
        conn.execute("SELECT count(*) FROM crowd WHERE username = 'warm-up'")
    time.sleep(SPACING_SECONDS)  # the warm-ups leave the shared rate-limit window
    counts = [None] * sessions
    barrier = threading.Barrier(sessions)

    def scan(i):
        barrier.wait()
        counts[i] = conns[i].execute("SELECT count(*) FROM crowd").fetchone()[0]

    threads = [threading.Thread(target=scan, args=(i,)) for i in range(sessions)]
    proxy.clear()
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    for conn in conns:
        conn.close()
    requests = len([1 for _, name in proxy.arrivals if "ListUsers" in name])
    return sorted(set(counts)), requests, seconds, proxy.max_per_second("ListUsers")


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
        f"SELECT * FROM u0 WHERE username = '{names[0]}'",
        f"SELECT * FROM u0 WHERE username IN ({listed})",
        "SELECT u.* FROM user_keys k JOIN u0 u ON u.username = k.username",
    ):
        session.conn.execute(sql).fetchall()
    billed, listed = proxy.count(".AdminGetUser"), proxy.count(".ListUsers")
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


def render(header, report) -> str:
    rows, latency, costs, crowd, (overhead, import_s, client_s), big = report
    out = ["# Benchmarks", "", "Written by `make bench` (`python -m bench.run`).", "", *header]
    out += [
        "- Wall time is the median of 1-5 runs, a second apart, on a warm connection, "
        "PostgreSQL and moto on the same machine; requests are the wrapper's own count (the "
        "DEBUG1 line). moto rebuilds the whole user list for every page, so a page of a "
        "large pool costs it more than a page of a small one.",
        "",
        "| pool | query | rows | requests | ceil(N/60) | time (ms) |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for size, name, count, requests, seconds in rows:
        out.append(
            f"| {size:,} | {name} | {count:,} | {requests} | {math.ceil(size / 60)} | "
            f"{seconds * 1000:,.0f} |"
        )
    seq = next(r for r in latency if r[0].startswith("seq"))
    out += [
        "",
        f"## Full scan of {big:,} users with {LATENCY * 1000:.0f} ms added to every request",
        "",
        "A delaying proxy of the benchmark's own sits between the wrapper and moto. Default "
        "rate cap (`max_requests_per_second` 25); max/s is the most ListUsers requests the "
        "proxy saw arrive within any one second.",
        "",
        "| scan | requests | time (s) | speed-up | max requests/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, requests, seconds, per_second in latency:
        out.append(
            f"| {name} | {requests} | {seconds:.1f} | {seq[2] / seconds:.2f}x | {per_second} |"
        )
    out += ["", "## What it costs besides requests", "", "| what | observed |", "| --- | --- |"]
    out += [f"| {what} | {observed} |" for what, observed in costs]
    counts, requests, seconds, per_second = crowd
    out += [
        "",
        f"## {CROWD} sessions scanning at once, one account's budget",
        "",
        f"{CROWD} connections count the {counts[0]:,}-user pool at the same moment, through "
        f"the same proxy ({LATENCY * 1000:.0f} ms a request), default cap 25: the cap is a "
        "budget shared by every connection of the server, so between them they may send at "
        "most 25 ListUsers requests in any one second (sustained, "
        f"{100 / SPACING_SECONDS:.0f} % of it: requests are spaced so that they also arrive "
        "within the cap).",
        "",
        "| sessions | users each | ListUsers requests | time (s) | requests/s | "
        "max requests/s | cap |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {CROWD} | {', '.join(f'{c:,}' for c in counts)} | {requests} | {seconds:.1f} | "
        f"{requests / seconds:.1f} | {per_second} | 25 |",
    ]
    out += [
        "",
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
    return "\n".join(out)


if __name__ == "__main__":
    main()
