"""The backend's memory over 10,000 lookups (docs/multicorn.md H15: every non-error log call
leaks its message).

Multicorn2 3.2 leaks every message handed to its ``log_to_postgres``, shown or not; the
wrapper hands it the per-scan DEBUG line only where ``client_min_messages`` or
``log_min_messages`` would show it.  One warm session runs the lookups twice: with the
defaults (nothing shown, nothing handed over) and with ``client_min_messages = debug1``,
which shows the line and so hands it over on every scan, as every session did before the
change.  VmRSS is read from /proc/<pid>/status of the session's own backend.
"""

from __future__ import annotations

from pathlib import Path

LOOKUPS = 10_000
STEP = 2_000
WARM_UP = 200  # first lookups: the client, caches and plans settle


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def samples(conn, table: str, users: int) -> tuple[list[int], int]:
    """VmRSS (KiB) of ``conn``'s backend after the warm-up and every STEP lookups, and how
    many of the lookups' scan lines the client received."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    lines = []
    conn.add_notice_handler(lambda diag: lines.append(diag.message_primary or ""))
    lookup = f"SELECT username FROM {table} WHERE username = %s"
    for i in range(WARM_UP):
        conn.execute(lookup, (f"bench{i % users:06d}",)).fetchall()
    rss = [vm_rss_kib(pid)]
    lines.clear()
    for i in range(LOOKUPS):
        conn.execute(lookup, (f"bench{i % users:06d}",)).fetchall()
        if (i + 1) % STEP == 0:
            rss.append(vm_rss_kib(pid))
    return rss, sum(line.startswith("cognito_fdw: ") for line in lines)


def rows(connect, dsn: str, table: str, users: int) -> list[tuple[str, list[int], int]]:
    """(setting, VmRSS samples, scan lines received) with the defaults, then with the line
    shown."""
    out = []
    for label, client in (
        ("defaults (client_min_messages = notice): no line handed to Multicorn", "notice"),
        ("client_min_messages = debug1: every scan's line handed over, as before", "debug1"),
    ):
        with connect(dsn) as conn:
            conn.execute(f"SET client_min_messages = {client}")
            out.append((label, *samples(conn, table, users)))
    return out


def render(results: list[tuple[str, list[int], int]], users: int) -> list[str]:
    steps = [f"after {n:,}" for n in range(STEP, LOOKUPS + 1, STEP)]
    lines = [
        f"## Backend memory over {LOOKUPS:,} lookups",
        "",
        f"One session looks up a username {LOOKUPS:,} times (a pool of {users:,}, uncapped "
        f"server, after {WARM_UP} warm-up lookups); VmRSS of its backend from "
        "/proc/<pid>/status, in KiB. Multicorn2 3.2 leaks every message its `log_to_postgres` "
        "is handed (docs/multicorn.md H15: every non-error log call leaks its message): the "
        "wrapper hands over its per-scan DEBUG line only where `client_min_messages` or "
        "`log_min_messages` would show it, so with the "
        "defaults nothing is handed over; `debug1` shows the line, which every session's "
        "scans handed over before. The first lookups grow any backend (caches, the heap's "
        "first pages); after them, the difference between the two rows is what the report "
        "leaks (two copies of a line of about 40 bytes, each a 48-byte allocation).",
        "",
        f"| setting | scan lines received | start | {' | '.join(steps)} | growth | "
        f"per lookup after the first {STEP:,} |",
        "| --- | ---: | ---: |" + " ---: |" * (len(steps) + 2),
    ]
    for label, rss, shown in results:
        growth = rss[-1] - rss[0]
        steady = (rss[-1] - rss[1]) * 1024 / (LOOKUPS - STEP)
        cells = " | ".join(f"{kib:,}" for kib in rss)
        lines.append(f"| {label} | {shown:,} | {cells} | {growth:,} KiB | {steady:.0f} B |")
    return [*lines, ""]
