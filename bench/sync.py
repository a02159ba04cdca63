"""The benchmark of sql/sync.sql on a large pool: the sync in parts, an interrupted sync
resumed, and users on first sight.  ``make bench`` runs it after the query rows; alone::

    python -m bench.sync [--moto-url http://127.0.0.1:5000] [--users 20000]

prints the section (``--moto-url`` reuses a running moto whose pool ``bench-<users>`` is
already seeded; seeding 20,000 users takes several minutes).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import threading
import time
from pathlib import Path

import psycopg

from cognito_fdw.tools.devstack import LocalPostgres, MotoServer
from cognito_fdw.tools.host import postgres_bindir
from tests.support.proxy import Proxy

from .quota import LATENCY, say
from .stack import KEYS, NO_CACHE, ROOT, cognito_client, connect, ensure_pool

USERS = 20000
SCHEMA = "sync_cognito"
FIRST_SIGHT_CALLS = 20


def rss_mb(pid: int) -> tuple[float, float] | None:
    """The backend's resident memory in MB: all of it (VmRSS, which counts the pages of
    shared buffers the backend has touched) and its private part (RssAnon); None when the
    server runs elsewhere."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return None
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["RssAnon"].split()[0]) / 1024


class SyncSession:
    """A connection that keeps the wrapper's per-scan request counts (DEBUG1 lines)."""

    def __init__(self, dsn):
        self.conn = connect(dsn)
        self.messages: list[str] = []
        self.conn.add_notice_handler(lambda d: self.messages.append(d.message_primary or ""))
        self.conn.execute("SET client_min_messages = debug1")
        self.pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    def scans(self) -> list[int]:
        """Requests of each scan reported since the last call (a scan cut by a cancel is
        reported at the next statement)."""
        return [int(m.group(1)) for m in self._take(r"cognito_fdw: (\d+) r")]

    def parts_read(self) -> list[str]:
        """The parts app.sync_users synced (committed or not) since the last call."""
        return [m.group(1) for m in self._take(r"app.sync_users \(part (\w)\)")]

    def _take(self, pattern: str) -> list[re.Match]:
        found = [m for s in self.messages if (m := re.match(pattern, s))]
        self.messages.clear()
        return found

    def call(self, max_parts: int = 16) -> float:
        """Seconds one CALL app.sync_users_in_parts took."""
        started = time.perf_counter()
        self.conn.execute("CALL app.sync_users_in_parts(%s)", (max_parts,))
        return time.perf_counter() - started

    def parts(self) -> dict[str, tuple]:
        """part -> (round, users, synced_at)."""
        rows = self.conn.execute("SELECT part, round, users, synced_at FROM app.sync_parts")
        return {r[0]: r[1:] for r in rows}


def install(dsn: str, pool_id: str, endpoint: str) -> None:
    """A server on ``endpoint``, its foreign tables in SCHEMA, and sql/sync.sql over them."""
    with connect(dsn) as conn:
        conn.execute(
            f"CREATE SERVER sync_server FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
            f"'cognito_fdw.CognitoFdw', user_pool_id '{pool_id}', endpoint_url '{endpoint}', "
            f"{NO_CACHE})"
        )
        conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER sync_server OPTIONS ({KEYS})")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"IMPORT FOREIGN SCHEMA cognito FROM SERVER sync_server INTO {SCHEMA}")
    subprocess.run(
        [str(postgres_bindir() / "psql"), dsn, "-X", "-q", "-v", f"cognito_schema={SCHEMA}",
         "-f", str(ROOT / "sql" / "sync.sql")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip


def full_rounds(session: SyncSession, proxy: Proxy) -> list[tuple]:
    """Three whole rounds (the first inserts every user, the others find them unchanged):
    (run, parts, requests, expected requests, seconds, max requests/s, MB before, MB after,
    users in app.users)."""
    session.conn.execute("SELECT count(*) FROM app.cognito_users WHERE sub = 'warm-up'")
    session.scans()  # the warm-up's one request: imports and client are loaded
    rows = []
    for name in (
        "first round (every user new)",
        *(f"{n} round (every user unchanged)" for n in ("second", "third")),
    ):
        before = rss_mb(session.pid)
        proxy.clear()
        seconds = session.call()
        scans = session.scans()
        parts = session.parts()
        expected = sum(math.ceil(users / 60) or 1 for _, users, _ in parts.values())
        users = session.conn.execute("SELECT count(*) FROM app.users").fetchone()[0]
        peak = proxy.peak("ListUsers")
        after = rss_mb(session.pid)
        rows.append((name, len(scans), sum(scans), expected, seconds, peak, before, after, users))
        say(f"sync: {name}: {sum(scans)} requests in {seconds:.1f} s")
    return rows


def interrupted_round(session: SyncSession, proxy: Proxy, timeout: float) -> dict:
    """A round cut by statement_timeout, then resumed by a second call: what each read."""
    target = max(r[0] for r in session.parts().values()) + 1  # the last round is complete
    session.conn.execute(f"SET statement_timeout = '{int(timeout * 1000)}ms'")
    started = time.perf_counter()
    try:
        session.call()
        error = "none (the round finished within the timeout)"
    except psycopg.Error as exc:
        error = str(exc).splitlines()[0]
    cut_after = time.perf_counter() - started
    say(f"sync: a round cut after {cut_after:.1f} s ({error}); resuming it")
    session.conn.execute("RESET statement_timeout")
    before = session.parts()
    done = {p for p, r in before.items() if r[0] == target}
    users = {p: r[1] for p, r in before.items()}  # as of the last sync of each part
    session.parts_read()
    proxy.clear()
    seconds = session.call()
    resumed = session.parts_read()
    after = session.parts()
    return {
        "timeout": timeout, "cut_after": cut_after, "error": error, "committed": len(done),
        "resumed_parts": len(resumed), "resumed_requests": len(proxy.requests("ListUsers")),
        "expected_requests": sum(math.ceil(users[p] / 60) or 1 for p in after if p not in done),
        "seconds": seconds,
        "read_twice": len(done & set(resumed)) + sum(after[p][2] != before[p][2] for p in done),
        "skipped": sum(r[0] != target for r in after.values()),
    }  # fmt: skip


CALLERS = (1, 2, 4)  # concurrent CALLs of a round at an AWS-like round trip
CAP = 25


def callers_at_once(dsn: str, callers: int, proxy: Proxy) -> tuple:
    """One whole round by ``callers`` connections CALLing app.sync_users_in_parts() at
    once (they share the parts: each is locked while it syncs): (callers, requests,
    seconds from the first request to the last, requests/s, share of the cap, the most in
    any one second, parts each caller synced, each caller's RssAnon before and after)."""
    sessions = [SyncSession(dsn) for _ in range(callers)]
    for session in sessions:  # warm: the wrapper loaded, the client made
        session.conn.execute("SELECT count(*) FROM app.cognito_users WHERE sub = 'warm-up'")
        session.parts_read()
    time.sleep(1.1)  # the warm-ups leave the rate window
    before = [rss_mb(session.pid) for session in sessions]
    proxy.clear()
    barrier = threading.Barrier(callers)

    def call(session):
        barrier.wait()
        session.call()

    threads = [threading.Thread(target=call, args=(session,)) for session in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    arrived = proxy.arrived("ListUsers")
    seconds = arrived[-1] - arrived[0] if len(arrived) > 1 else 0.0
    rate = (len(arrived) - 1) / seconds if seconds else 0.0
    parts = [len(session.parts_read()) for session in sessions]
    after = [rss_mb(session.pid) for session in sessions]
    for session in sessions:
        session.conn.close()
    say(f"sync: {callers} callers: {len(arrived)} requests at {rate:.1f}/s")
    return (callers, len(arrived), seconds, rate, rate / CAP, proxy.peak("ListUsers"), parts,
            before, after)  # fmt: skip


def at_the_cap(dsn: str, moto_url: str) -> list[tuple]:
    """Rounds by 1, 2 and 4 callers at once through a replaying proxy that adds
    LATENCY to every request (a round first fills its memory, moto answering)."""
    proxy = Proxy(moto_url, LATENCY, replay=True).start()
    try:
        with connect(dsn) as conn:
            conn.execute(f"ALTER SERVER sync_server OPTIONS (SET endpoint_url '{proxy.url}')")
        say("sync: a round to fill the replaying proxy")
        SyncSession(dsn).call()
        return [callers_at_once(dsn, callers, proxy) for callers in CALLERS]
    finally:
        proxy.stop()


def first_sight(session: SyncSession) -> list[tuple]:
    """app.user_for_sub on subs whose rows were just deleted: (call, calls, requests, median
    ms)."""
    subs = [
        r[0]
        for r in session.conn.execute(
            "DELETE FROM app.users WHERE id IN (SELECT id FROM app.users ORDER BY random() "
            f"LIMIT {FIRST_SIGHT_CALLS}) RETURNING sub"
        )
    ]
    session.scans()
    rows = []
    for name in ("first call (creates the row)", "second call (the row exists)"):
        times, requests = [], 0
        for sub in subs:
            started = time.perf_counter()
            session.conn.execute("SELECT app.user_for_sub(%s)", (sub,)).fetchone()
            times.append(time.perf_counter() - started)
            requests += sum(session.scans())
        rows.append((name, len(subs), requests, statistics.median(times) * 1000))
        say(f"sync: app.user_for_sub, {name}: {requests} requests for {len(subs)} calls")
    return rows


def section(dsn: str, cognito, moto_url: str, size: int = USERS) -> list[str]:
    """The benchmark's sync section, as markdown lines."""
    pool_id = ensure_pool(cognito, size)
    proxy = Proxy(moto_url).start()  # no delay: it only counts requests/s
    try:
        install(dsn, pool_id, proxy.url)
        session = SyncSession(dsn)
        rounds = full_rounds(session, proxy)
        cut = interrupted_round(session, proxy, timeout=rounds[-1][4] / 2)
        sight = first_sight(session)
        session.conn.close()
        capped = at_the_cap(dsn, moto_url)
    finally:
        proxy.stop()
    return render(size, rounds, cut, sight, capped)


def render(size, rounds, cut, sight, capped) -> list[str]:
    def mb(value):
        return "n/a" if value is None else f"{value[0]:.0f} / {value[1]:.0f}"

    out = [
        "",
        f"## `sql/sync.sql` on a {size:,}-user pool",
        "",
        '`CALL app.sync_users_in_parts()`: 16 parts (`sub ^= "0"` .. `"f"`), one '
        "transaction each, in one connection at the default cap (25 requests/s). "
        "Expected requests: the sum over the parts of ceil(users/60). Max/s: the most "
        "ListUsers requests a counting proxy (no added delay) saw within any one second. "
        "Memory: the backend's VmRSS / RssAnon (from /proc/<pid>/status; VmRSS also counts the "
        "shared buffers the backend has touched, RssAnon is its own), after a warm-up lookup; "
        "RssAnon grows by up to `temp_buffers` (8 MB by default, the local buffers of the "
        "parts' temporary tables) over the first rounds, then stays flat.",
        "",
        "| run | parts | requests | expected | time (s) | max requests/s | memory before (MB) "
        "| memory after (MB) | rows in app.users |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, parts, requests, expected, seconds, peak, before, after, users in rounds:
        out.append(
            f"| {name} | {parts} | {requests} | {expected} | {seconds:.1f} | {peak} | "
            f"{mb(before)} | {mb(after)} | {users:,} |"
        )
    out += [
        "",
        f"A fourth round cut by `statement_timeout = {cut['timeout']:.1f}s` (ended after "
        f"{cut['cut_after']:.1f} s: {cut['error']}) had committed {cut['committed']} parts. "
        f"The next call read {cut['resumed_parts']} parts "
        f"in {cut['resumed_requests']} ListUsers requests (expected {cut['expected_requests']}) in "
        f"{cut['seconds']:.1f} s. Committed parts read again: {cut['read_twice']}; parts "
        f"skipped: {cut['skipped']}.",
        "",
        "`app.user_for_sub(sub)` for users whose app.users row was deleted:",
        "",
        "| call | calls | requests | median time (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    out += [f"| {n} | {c} | {r} | {ms:.1f} |" for n, c, r, ms in sight]
    out += [
        "",
        "### A round at the cap: callers at once",
        "",
        "The rounds above go at moto's pace: one process that filters the "
        f"{size:,} users in Python for every request, whatever the wrapper does.  Here a "
        f"replaying proxy answers every request after {LATENCY * 1000:.0f} ms and nothing "
        "else (an AWS-like round trip), and a round is run by 1, 2 or 4 connections "
        "CALLing `app.sync_users_in_parts()` at once: they share the round's parts (each "
        "locked while it syncs, skipped by the others), and all their requests share the "
        f"account's budget of {CAP}/s.  Requests/s: from the first request of the round to "
        "its last; the rate window (`ratelimit.py`) allows at most "
        f"{CAP / 1.05:.1f}/s ({100 / 1.05:.0f} % of the cap) over a long run.",
        "",
        "| callers | requests | time (s) | requests/s | share of the cap | max requests/s "
        "| parts per caller | RssAnon before → after (MB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for callers, requests, seconds, rate, share, peak, parts, before, after in capped:
        memory = ", ".join(
            "n/a" if b is None else f"{b[1]:.0f} → {a[1]:.0f}" for b, a in zip(before, after)
        )
        out.append(
            f"| {callers} | {requests} | {seconds:.1f} | {rate:.1f} | {share:.0%} | {peak} | "
            f"{', '.join(map(str, parts))} | {memory} |"
        )
    out.append("")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moto-url")
    parser.add_argument("--users", type=int, default=USERS)
    args = parser.parse_args()
    moto = None if args.moto_url else MotoServer().start()
    moto_url = args.moto_url or moto.url
    pg = LocalPostgres().start()
    try:
        with connect(pg.dsn) as conn:
            conn.execute("CREATE EXTENSION multicorn")
        print("\n".join(section(pg.dsn, cognito_client(moto_url), moto_url, args.users)))
    finally:
        pg.cleanup()
        if moto:
            moto.stop()


if __name__ == "__main__":
    main()
