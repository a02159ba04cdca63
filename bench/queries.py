"""The benchmark's query shapes: requests and wall time of each on pools of 1,000 and 10,000
users, and the sequential scan against raw boto3 paging."""

from __future__ import annotations

import math
import statistics
import time

from .quota import say


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
        ("full scan (8 workers, 25/s)", f"SELECT * FROM {t}", 1),
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


def query_rows(session, cognito, pools) -> list[tuple]:
    """(pool size, shape, rows, requests, median seconds) for every shape and pool."""
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
            say(f"queries: {size:,} users, {name}: {requests} requests, {seconds * 1000:,.0f} ms")
        rows.extend(compare_sequential(session, cognito, pool_id, size))
        say(f"queries: {size:,} users, sequential scan against raw boto3 paging")
    return rows


def render_queries(header, rows) -> list[str]:
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
    return [*out, ""]
