"""The wrapper's request counts per scan, read from the DEBUG1 line it reports at the end of
each scan (``cognito_fdw: N requests, ...``), on a connection that collects its notices."""

from __future__ import annotations

import contextlib
import re


def collect_notices(conn) -> None:
    """Keep the primary message of every notice ``conn`` receives in ``conn.notices``."""
    conn.notices = []
    # A Diagnostic is valid only inside the callback: keep its text.
    conn.add_notice_handler(lambda diag: conn.notices.append(diag.message_primary or ""))


def requests_of(conn) -> list[int]:
    """Requests per scan, from the DEBUG lines of the statements run since the last call."""
    counts = [
        int(m.group(1))
        for text in conn.notices
        if (m := re.match(r"cognito_fdw: (\d+) requests", text))
    ]
    conn.notices.clear()
    return counts


@contextlib.contextmanager
def counting(conn):
    """Within the block, the wrapper reports each scan's requests at DEBUG1."""
    conn.execute("SET client_min_messages = debug1")
    requests_of(conn)
    try:
        yield
    finally:
        conn.execute("RESET client_min_messages")
