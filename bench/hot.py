"""The hot paths: an app looking its users up on every request, through PgBouncer.

50 asyncpg clients (as an async web app holds them) connect through Debian's PgBouncer in
transaction mode (20 server connections) and look up users of a hot set of 1,000 (the
``bench-1000`` pool) for ``--hot-seconds`` each way, by email and by username in turn:

* *live*: the users table, ``cache_ttl 0``: every lookup is a ListUsers request;
* *cache*: the same table on a server with ``cache_ttl`` longer than the run, so a key once
  looked up stays in the shared cache (cognito_fdw/shared.py) for the whole run;
* *user_for_sub*: ``app.user_for_sub(sub)`` (sql/sync.sql) on an empty ``app.users``: the
  first sight of a sub is one lookup, every later one reads the row;
* *mirror*: ``app.users`` after ``app.sync_users()``, read by sub: no request at all.

Every request goes through a counting proxy that adds :data:`bench.quota.LATENCY` to each
(moto answering live).  Reported per way: lookups, lookups/s, p50 and p95 of all lookups
and of the repeats alone (a key the run had looked up before), requests, requests per
lookup, and the requests of repeats (requests beyond the first sight of each key).
Alone::

    python -m bench.hot [--moto-url URL] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from cognito_fdw.tools.devstack import LocalPostgres, MotoServer
from cognito_fdw.tools.host import postgres_bindir
from tests.support.proxy import Proxy

from .quota import LATENCY, say
from .stack import KEYS, ROOT, cognito_client, connect, ensure_pool

HOT = 1000
CLIENTS = 50
SERVER_CONNECTIONS = 20
SECONDS = 30
PGBOUNCER = "/usr/sbin/pgbouncer"
COLUMNS = "username text, sub text, email text, status text, enabled boolean"


def hot_set(cognito, pool_id: str) -> list[dict]:
    """The pool's users as (username, email, sub)."""
    users = []
    for page in cognito.get_paginator("list_users").paginate(UserPoolId=pool_id):
        for user in page["Users"]:
            attrs = {a["Name"]: a["Value"] for a in user["Attributes"]}
            users.append({"username": user["Username"], "email": attrs.get("email"),
                          "sub": attrs["sub"]})  # fmt: skip
    return users[:HOT]


def install(pg: LocalPostgres, pool_id: str, endpoint: str, seconds: float) -> str:
    """Database ``hot``: tables hot.live and hot.cached, sql/sync.sql on the live server."""
    with connect(pg.dsn) as conn:
        conn.execute("CREATE DATABASE hot")
    dsn = pg.dsn.replace("dbname=postgres", "dbname=hot")
    ttl = int(seconds * 4 + 60)  # longer than the run: what stays is what was looked up
    with connect(dsn) as conn:
        conn.execute("CREATE EXTENSION multicorn")
        # hot_warm: the cached server's pool, endpoint and keys (so the same cache entries)
        # with the cap lifted, to warm the cache before the clock starts.
        servers = (
            ("hot_live", "cache_ttl '0'"),
            ("hot_cached", f"cache_ttl '{ttl}'"),
            ("hot_warm", f"cache_ttl '{ttl}', max_requests_per_second '1000'"),
        )
        for server, options in servers:
            conn.execute(
                f"CREATE SERVER {server} FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
                f"'cognito_fdw.CognitoFdw', user_pool_id '{pool_id}', "
                f"endpoint_url '{endpoint}', {options})"
            )
            conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {server} OPTIONS ({KEYS})")
        conn.execute("CREATE SCHEMA hot")
        for table, server in (("live", "hot_live"), ("cached", "hot_cached"), ("warm", "hot_warm")):
            conn.execute(
                f"CREATE FOREIGN TABLE hot.{table} ({COLUMNS}) SERVER {server} "
                "OPTIONS (object 'users')"
            )
        conn.execute("CREATE SCHEMA cognito")
        conn.execute("IMPORT FOREIGN SCHEMA cognito FROM SERVER hot_live INTO cognito "
                     "OPTIONS (writable 'true')")  # fmt: skip
    subprocess.run(
        [str(postgres_bindir() / "psql"), dsn, "-X", "-q", "-f", str(ROOT / "sql" / "sync.sql")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dsn


class Bouncer:
    """PgBouncer in transaction mode in front of database ``hot``, as the server's OS user
    (PgBouncer refuses to run as root)."""

    def __init__(self, pg: LocalPostgres):
        self.dir = Path(tempfile.mkdtemp(prefix="cfdw-bouncer-"))
        self.port = _free_port()
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"hot = host=127.0.0.1 port={pg.port} dbname=hot user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir}/userlist.txt\n"
            f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
            f"max_client_conn = {CLIENTS * 20}\nlogfile = {self.dir}/pgbouncer.log\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        user = pg.user
        if user is not None:
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
        run_as = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid}
        self.process = subprocess.Popen(
            [PGBOUNCER, str(self.dir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **run_as,
        )  # fmt: skip
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/hot"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # a fast shutdown (SIGTERM waits for clients)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _clients(url: str, seconds: float, lookup) -> tuple[list, int]:
    """(seconds, key, repeat) of every lookup the clients completed within ``seconds``, and
    how many failed."""
    pools = await asyncpg.create_pool(
        url, min_size=CLIENTS, max_size=CLIENTS, statement_cache_size=0, ssl=False
    )
    seen: set = set()
    done: list = []
    errors: list = []
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        rng = random.Random(n)
        async with pools.acquire() as conn:
            while time.monotonic() < deadline:
                sql, key = lookup(rng)
                repeat = key in seen
                seen.add(key)
                started = time.perf_counter()
                try:
                    await conn.fetch(sql, key[1])
                except asyncpg.PostgresError as exc:
                    errors.append(str(exc))
                    continue
                done.append((time.perf_counter() - started, key, repeat))

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    pools.terminate()
    if errors:
        say(f"hot: {len(errors)} errors, the first: {errors[0]}")
    return done, len(errors)


def ways(users: list[dict]):
    """(name, a function picking one lookup: (sql, (kind, value)))."""

    def by(table):
        def pick(rng):
            user = rng.choice(users)
            if rng.random() < 0.5:
                return f"SELECT username, sub, enabled, status FROM {table} WHERE email = $1", (
                    "email", user["email"])  # fmt: skip
            return f"SELECT username, sub, enabled, status FROM {table} WHERE username = $1", (
                "username", user["username"])  # fmt: skip

        return pick

    def by_sub(sql):
        return lambda rng: (sql, ("sub", rng.choice(users)["sub"]))

    return [
        ("live lookups (`cache_ttl 0`)", by("hot.live")),
        ("with the cache, from cold (`cache_ttl` longer than the run)", by("hot.cached")),
        ("with the cache, warm (every key looked up once before the clock)", by("hot.cached")),
        ("`app.user_for_sub(sub)`, app.users empty at the start",
         by_sub("SELECT (app.user_for_sub($1::uuid)).id")),
        ("the mirror: `app.users` by sub, after `app.sync_users()`",
         by_sub("SELECT id, username, email FROM app.users WHERE sub = $1::uuid")),
    ]  # fmt: skip


def measure(pg, dsn: str, users: list[dict], proxy: Proxy, seconds: float) -> list[dict]:
    """Each way on a PgBouncer of its own (one kept across the ways stopped accepting
    logins after the warm cache's way, with no backend busy: not investigated further),
    warmed before the clock: every server connection has loaded the wrapper."""
    rows = []
    for name, pick in ways(users):
        bouncer = Bouncer(pg)
        try:
            rows.append(_way(bouncer.url, dsn, users, proxy, seconds, name, pick))
        finally:
            bouncer.stop()
    return rows


def _way(url, dsn, users, proxy, seconds, name, pick) -> dict:
    with connect(dsn) as conn:
        if "user_for_sub" in name:
            conn.execute("TRUNCATE app.users CASCADE")
        if "mirror" in name:
            conn.execute("SELECT * FROM app.sync_users()").fetchall()
    time.sleep(0.5)  # PgBouncer listening
    asyncio.run(_warm(url))
    if "warm" in name:
        say("hot: warming the cache: every key of the hot set once")
        asyncio.run(_fill(url, users))
    proxy.clear()
    say(f"hot: {name} for {seconds:.0f} s")
    done, errors = asyncio.run(_clients(url, seconds, pick))
    requests = len(proxy.requests())
    firsts = len({key for _, key, _ in done})
    ms = sorted(t * 1000 for t, _, _ in done)
    repeats = sorted(t * 1000 for t, _, repeat in done if repeat)
    row = {
        "name": name, "lookups": len(done), "seconds": seconds, "errors": errors,
        "p50": _pct(ms, 50), "p95": _pct(ms, 95),
        "repeat_p50": _pct(repeats, 50), "repeat_p95": _pct(repeats, 95),
        "repeats": len(repeats), "requests": requests, "keys": firsts,
    }  # fmt: skip
    say(f"hot: {len(done)} lookups, {requests} requests, p50 {_pct(ms, 50):.0f} ms")
    return row


async def _warm(url: str) -> None:
    pool = await asyncpg.create_pool(url, min_size=CLIENTS, max_size=CLIENTS,
                                     statement_cache_size=0, ssl=False)  # fmt: skip
    await asyncio.gather(*(
        pool.execute("SELECT count(*) FROM hot.live WHERE username = 'warm-up'")
        for _ in range(CLIENTS * 2)
    ))  # fmt: skip
    pool.terminate()


async def _fill(url: str, users: list[dict]) -> None:
    """Every key of the hot set looked up once through hot.warm (cap lifted)."""
    pool = await asyncpg.create_pool(url, min_size=CLIENTS, max_size=CLIENTS,
                                     statement_cache_size=0, ssl=False)  # fmt: skip
    keys = [(c, u[c]) for u in users for c in ("email", "username")]

    async def one(column, value):
        await pool.fetch(f"SELECT username FROM hot.warm WHERE {column} = $1", value)

    for start in range(0, len(keys), CLIENTS):
        await asyncio.gather(*(one(c, v) for c, v in keys[start : start + CLIENTS]))
    pool.terminate()


def _pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def section(pg: LocalPostgres, cognito, moto_url: str, seconds: float = SECONDS) -> list[str]:
    pool_id = ensure_pool(cognito, HOT)
    users = hot_set(cognito, pool_id)
    proxy = Proxy(moto_url, LATENCY).start()
    try:
        dsn = install(pg, pool_id, proxy.url, seconds)
        rows = measure(pg, dsn, users, proxy, seconds)
    finally:
        proxy.stop()
    return render(rows, seconds)


def render(rows: list[dict], seconds: float) -> list[str]:
    out = [
        "## Hot paths: 50 clients through PgBouncer",
        "",
        f"{CLIENTS} asyncpg clients through PgBouncer (transaction mode, {SERVER_CONNECTIONS} "
        f"server connections) look up random users of a hot set of {HOT:,} for "
        f"{seconds:.0f} s each way (by email or by username, at random; by sub for the last "
        f"two), every request {LATENCY * 1000:.0f} ms at a counting proxy, the default cap "
        "(25 requests/s). *Repeats*: lookups of a key the run had looked up before; "
        "*requests for repeats*: requests beyond one per key looked up. The live row is "
        "what every lookup was before the cache (the report that asked for it measured 25.6 "
        "lookups/s, p50 1,976 ms). Re-run: `python -m bench.run --only hot --hot-seconds 60`.",
        "",
        "| way | lookups | lookups/s | p50 (ms) | p95 (ms) | repeats: p50 / p95 (ms) | "
        "requests | requests per lookup | requests for repeats | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        out.append(
            f"| {r['name']} | {r['lookups']:,} | {r['lookups'] / r['seconds']:,.1f} | "
            f"{r['p50']:,.1f} | {r['p95']:,.1f} | {r['repeat_p50']:,.1f} / "
            f"{r['repeat_p95']:,.1f} | {r['requests']:,} | "
            f"{r['requests'] / max(1, r['lookups']):.3f} | "
            f"{max(0, r['requests'] - r['keys']):,} | {r['errors']} |"
        )
    out.append("")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moto-url")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args()
    moto = None if args.moto_url else MotoServer().start()
    moto_url = args.moto_url or moto.url
    pg = LocalPostgres().start()
    try:
        print("\n".join(section(pg, cognito_client(moto_url), moto_url, args.seconds)))
    finally:
        pg.cleanup()
        if moto:
            moto.stop()


if __name__ == "__main__":
    main()
