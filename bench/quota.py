"""The benchmark's scans at the request-rate cap: one full scan of the large pool through a
proxy that adds 100 ms to every request, and eight sessions scanning the small pool at once.

Requests are counted where they arrive (the proxy's kernel receive times, tests/support/proxy.py):
the scan's share of the cap is its ListUsers requests over the statement's wall time,
divided by the cap; "max in any 1 s" is the most requests that arrived within any
one-second window, which must never exceed the cap.
"""

from __future__ import annotations

import statistics
import threading
import time

from cognito_fdw.aws.ratelimit import SPACING_SECONDS
from tests.support.proxy import Proxy, most_in_one_second

CAP = 25  # the default max_requests_per_second
LATENCY = 0.1
CROWD = 8  # sessions scanning at once against one account's budget
REPEAT = 3

# (label, table suffix, workers, replayed): tables made by run.create_tables on the server
# "lat" (replaying proxy) and "live" (the same proxy without replay).
SCANS = (
    ("sequential paging", "_seq25", 1, True),
    ("concurrent, 4 workers", "_w4", 4, True),
    ("concurrent, 8 workers (default)", "", 8, True),
    ("concurrent, 4 workers", "_w4", 4, False),
    ("concurrent, 8 workers (default)", "", 8, False),
)


def percent(share: float) -> str:
    return f"{share * 100:.0f} %"


def say(line: str) -> None:
    """One line per case as the benchmark runs: a sign of life, flushed at once."""
    print(f"[bench] {line}", flush=True)


def scan_once(session, proxy: Proxy, table: str) -> dict:
    """One ``count(*)`` of ``table``: requests, seconds, and where the time went."""
    proxy.clear()  # Session.run first waits for the rate-limit window to empty
    seconds, requests, _ = session.run(f"SELECT count(*) FROM {table}", repeat=1)
    ended = time.monotonic()
    started = ended - seconds
    stamps = proxy.arrived("ListUsers")
    return {
        "requests": len(stamps), "counted": requests, "seconds": seconds,
        "peak": most_in_one_second(stamps),
        "first": stamps[0] - started, "after_last": ended - stamps[-1],
        "last_second": sum(1 for t in stamps if t > stamps[-1] - 1.0),
    }  # fmt: skip


def latency_rows(session, replaying: Proxy, live: Proxy) -> list[dict]:
    """Each of SCANS, the concurrent ones REPEAT times: the median run's figures, the
    largest peak of all runs."""
    say("latency: warm-up scan to fill the replaying proxy")
    session.run("SELECT count(*) FROM lat_u0", repeat=1)
    rows = []
    for label, suffix, workers, replayed in SCANS:
        table = f"{'lat' if replayed else 'live'}_u0{suffix}"
        runs = []
        for _ in range(1 if workers == 1 else REPEAT):
            runs.append(scan_once(session, replaying if replayed else live, table))
            say(
                f"latency: {label}: {runs[-1]['requests']} requests in "
                f"{runs[-1]['seconds']:.2f} s, at most {runs[-1]['peak']} in any second"
            )
        median = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        rows.append({**median, "label": label, "workers": workers, "replayed": replayed,
                     "peak": max(r["peak"] for r in runs), "runs": len(runs)})  # fmt: skip
    return rows


def moto_page_ms(cognito, pool_id: str) -> float:
    """Median milliseconds moto takes for one page of one part of the pool, asked directly."""
    times = []
    for part in "0123456789":
        started = time.perf_counter()
        cognito.list_users(UserPoolId=pool_id, Limit=60, Filter=f'sub ^= "{part}"')
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def render_latency(rows: list[dict], big: int, page_ms: float, load: tuple) -> list[str]:
    sequential = rows[0]["seconds"]
    default = next(r for r in rows if r["workers"] == 8 and r["replayed"])
    steady = CAP / SPACING_SECONDS
    rtt = LATENCY + page_ms / 1000
    out = [
        f"## Full scan of {big:,} users with {LATENCY * 1000:.0f} ms added to every request",
        "",
        "The tests' proxy (tests/support/proxy.py) sits between the wrapper and moto, default "
        f"cap ({CAP} requests/s, shared by the whole server). *Replayed*: after a warm-up "
        "scan the proxy answers each ListUsers request from its memory of moto's answer, so "
        f"every request takes {LATENCY * 1000:.0f} ms and nothing else; *live*: moto "
        f"answers, adding its own time (a page of a part of this pool, asked directly: "
        f"{page_ms:.0f} ms, about {CAP * page_ms / 1000:.1f} CPU-seconds a second at "
        f"{CAP} pages a second). Requests are counted where they arrive at the proxy (the "
        "kernel's receive time); share of the cap = requests / time / cap; max in any 1 s = "
        "the most requests that arrived within any one-second window (of all runs). Time "
        f"is the median of {REPEAT} runs (1 for sequential paging).",
        "",
        "| scan | requests | time (s) | speed-up | requests/s | share of the cap | "
        "max in any 1 s | cap |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        rate = r["requests"] / r["seconds"]
        kind = "replayed" if r["replayed"] else "live"
        out.append(
            f"| {r['label']}, {kind} | {r['requests']} | {r['seconds']:.2f} | "
            f"{sequential / r['seconds']:.2f}x | {rate:.1f} | {percent(rate / CAP)} | "
            f"{r['peak']} | {CAP} |"
        )
    rate = default["requests"] / default["seconds"]
    out += [
        "",
        f"**What limits the rest** (the default scan, replayed: {percent(rate / CAP)} of the "
        "cap). Requests are sent only while fewer than the cap were sent in the "
        f"{SPACING_SECONDS:g} s before (a second, plus {SPACING_SECONDS - 1:.2f} s for the "
        "way to Cognito, so that they also *arrive* within the cap), so a window that stays "
        f"full runs at {steady:.1f} requests/s, {percent(steady / CAP)} of the cap. Around that: "
        f"the first request arrived {default['first'] * 1000:.0f} ms after the statement "
        f"began; the statement ended {default['after_last'] * 1000:.0f} ms after the last "
        f"one arrived (its {LATENCY * 1000:.0f} ms round trip, then the rows); and the "
        f"parts end unevenly, so the last second saw {default['last_second']} requests. "
        f"Workers: a live round trip of about {rtt * 1000:.0f} ms needs {CAP * rtt:.1f} "
        f"requests in flight at {CAP}/s, which leaves 4 workers no room to spare; live, "
        "moto's own time per page also slows every request and, on a busy machine, the scan.",
        "",
        f"Load average while this section ran: {load[0]:.1f} at its start, {load[1]:.1f} at "
        "its end (2 CPUs shared with other work: every number above depends on it).",
        "",
    ]
    return out


def sessions_at_once(dsn, connect, proxy: Proxy, sessions: int = CROWD) -> dict:
    """``sessions`` connections count the small pool at once through the proxy."""
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
    stamps = proxy.arrived("ListUsers")
    say(f"crowd: {sessions} sessions, {len(stamps)} requests in {seconds:.2f} s")
    return {"counts": sorted(set(counts)), "requests": len(stamps), "seconds": seconds,
            "peak": most_in_one_second(stamps)}  # fmt: skip


def render_crowd(crowd: dict) -> list[str]:
    rate = crowd["requests"] / crowd["seconds"]
    return [
        f"## {CROWD} sessions scanning at once, one account's budget",
        "",
        f"{CROWD} connections count the {crowd['counts'][0]:,}-user pool at the same moment, "
        f"through the same proxy ({LATENCY * 1000:.0f} ms a request, moto answering live), "
        f"default cap {CAP}: the cap is a budget shared by every connection of the server, "
        f"so between them they may send at most {CAP} ListUsers requests in any one second "
        f"(sustained, {percent(1 / SPACING_SECONDS)} of it: requests are spaced so that they also "
        "arrive within the cap). Arrivals counted as above.",
        "",
        "| sessions | users each | ListUsers requests | time (s) | requests/s | "
        "share of the cap | max in any 1 s | cap |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {CROWD} | {', '.join(f'{c:,}' for c in crowd['counts'])} | {crowd['requests']} | "
        f"{crowd['seconds']:.1f} | {rate:.1f} | {percent(rate / CAP)} | {crowd['peak']} | {CAP} |",
        "",
    ]
