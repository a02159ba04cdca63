"""What every backend of the PostgreSQL server shares beyond the rate window: the result
cache, the cumulative request counters and the rate budgets in use, in one SQLite file.

The file is ``state.sqlite3`` in the wrapper's directory of the data directory
(:func:`cognito_fdw.quota.shared_directory`: the server OS user's own, mode 0700), so only
the server's own processes read or write it.  SQLite (the standard library's) does the locking
between processes; the file is written in WAL mode without fsync: it holds nothing that
cannot be read again from Cognito, and a crash loses at most the last counts.  Outside a
backend (the CLI, unit tests) there is none: nothing is cached or counted.

Only the backend's thread touches it (a scan worker frozen in SQLite while the backend's
thread holds the GIL in PostgreSQL would hold up every other backend's writes), and every
failure to use it (a busy file, a full disk, a damaged file) makes a cache miss and an
uncounted request, never a failed query: :func:`store` returns None then.

**The cache.** An entry is one request stream's complete answer (every page), under a key
that is an HMAC, with this server's own random key, of the credential identity (the key id
and a digest of the secret key: who signs), the endpoint, region, pool, operation and its
parameters.  No entry is read with other credentials, even a role that names another's key
id with a wrong secret; none is poisoned by another pool or endpoint.  The file never holds
a secret: the identity is in the HMAC only.  Entries are bounded: at most
:data:`MAX_ENTRY_BYTES` each (a larger answer is not kept), :data:`MAX_ENTRIES` and
:data:`MAX_BYTES` in all (the oldest go first), so the file and each backend's memory stay
bounded whatever the pool's size.  Each reader applies its own ``cache_ttl``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping

from ..errors import CognitoFdwError
from ..pg import backend

FILE = "state.sqlite3"
MAX_ENTRY_BYTES = 1 << 20  # about 1,000 user records: a filtered list, never a whole pool
MAX_ENTRY_ITEMS = 1000  # records a stream may have and still be kept (checked while reading)
MAX_ENTRIES = 20_000
MAX_BYTES = 64 << 20
BUSY_MILLISECONDS = 200  # a backend waits this long for another's write, then goes without
COUNTERS = ("requests", "throttled", "retries", "errors", "rows", "cognito_ms", "cap_ms",
            "cache_hits", "cache_misses")  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cache (
  key TEXT PRIMARY KEY, pool TEXT NOT NULL, region TEXT NOT NULL, endpoint TEXT NOT NULL,
  operation TEXT NOT NULL, stored REAL NOT NULL, bytes INTEGER NOT NULL, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS cache_stored ON cache (stored);
CREATE INDEX IF NOT EXISTS cache_pool ON cache (pool, region, endpoint, operation);
CREATE TABLE IF NOT EXISTS counters (
  pool TEXT NOT NULL, region TEXT NOT NULL, endpoint TEXT NOT NULL, operation TEXT NOT NULL,
  requests INTEGER NOT NULL DEFAULT 0, throttled INTEGER NOT NULL DEFAULT 0,
  retries INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
  rows INTEGER NOT NULL DEFAULT 0, cognito_ms REAL NOT NULL DEFAULT 0,
  cap_ms REAL NOT NULL DEFAULT 0, cache_hits INTEGER NOT NULL DEFAULT 0,
  cache_misses INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (pool, region, endpoint, operation));
CREATE TABLE IF NOT EXISTS budgets (
  window TEXT PRIMARY KEY, region TEXT NOT NULL, endpoint TEXT NOT NULL,
  cap INTEGER NOT NULL, seen REAL NOT NULL);
"""


def _encode(value) -> bytes:
    def default(obj):
        if isinstance(obj, datetime.datetime):  # botocore parses Cognito's timestamps
            return {"$datetime": obj.isoformat()}
        raise TypeError(type(obj).__name__)

    return json.dumps(value, default=default, ensure_ascii=False).encode()


def _decode(data: bytes):
    def hook(obj):
        if len(obj) == 1 and "$datetime" in obj:
            return datetime.datetime.fromisoformat(obj["$datetime"])
        return obj

    return json.loads(data, object_hook=hook)


class Store:
    """One connection to the shared state (see the module docstring)."""

    def __init__(self, path: str | None):
        self.path = path
        self.pid = os.getpid()
        self.db = sqlite3.connect(
            path or ":memory:", timeout=BUSY_MILLISECONDS / 1000, isolation_level=None
        )
        if path is not None:
            self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.executescript(_SCHEMA)
        boot = _boot_id()
        with self.transaction():
            found = dict(self.db.execute("SELECT name, value FROM meta").fetchall())
            if found.get("boot") != boot:
                # Entry times are time.monotonic()'s, which restarts at boot.
                self.db.execute("DELETE FROM cache")
                self.db.execute("DELETE FROM budgets")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('boot', ?)", (boot,))
            if "key" not in found:
                self.db.execute("INSERT INTO meta VALUES ('key', ?)", (os.urandom(32),))
            self._key = self.db.execute("SELECT value FROM meta WHERE name = 'key'").fetchone()[0]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def digest(self, parts) -> str:
        """An HMAC of ``repr(parts)`` with this server's key: a cache key, no secret in it."""
        return hmac.new(self._key, repr(parts).encode(), hashlib.sha256).hexdigest()

    # -- the cache ---------------------------------------------------------------------

    def get(self, key: str, ttl: float) -> tuple[list, float] | None:
        """(the answer, its age in seconds) if an entry younger than ``ttl`` exists."""
        row = self.db.execute("SELECT stored, value FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        age = time.monotonic() - row[0]
        if age >= ttl or age < 0:
            return None
        return _decode(row[1]), age

    def age(self, key: str) -> float | None:
        row = self.db.execute("SELECT stored FROM cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else time.monotonic() - row[0]

    def put(self, key: str, where: tuple[str, str, str], operation: str, value: list) -> bool:
        """Keep ``value`` (False when it is larger than an entry may be); the oldest entries
        go while there are more than the caps allow."""
        data = _encode(value)
        if len(data) > MAX_ENTRY_BYTES:
            return False
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, *where, operation, time.monotonic(), len(data), data),
            )
            count, size = self.db.execute("SELECT count(*), total(bytes) FROM cache").fetchone()
            while count > MAX_ENTRIES or size > MAX_BYTES:
                excess = max(count - MAX_ENTRIES, 1 + count // 10)
                self.db.execute(
                    "DELETE FROM cache WHERE key IN "
                    "(SELECT key FROM cache ORDER BY stored LIMIT ?)",
                    (excess,),
                )
                count, size = self.db.execute("SELECT count(*), total(bytes) FROM cache").fetchone()
        return True

    def forget(self, where: tuple[str, str, str] | None = None, operations=()) -> int:
        """Drop the entries of one pool (``where``: pool, region, endpoint), only those of
        ``operations`` if given, or every entry; how many."""
        sql, args = "DELETE FROM cache", []
        if where is not None:
            sql += " WHERE pool = ? AND region = ? AND endpoint = ?"
            args = list(where)
            if operations:
                sql += f" AND operation IN ({', '.join('?' * len(operations))})"
                args += list(operations)
        return self.db.execute(sql, args).rowcount

    def entries(self) -> list[tuple]:
        """(pool, region, endpoint, operation, entries, bytes, oldest age s) per operation."""
        now = time.monotonic()
        return [
            (*row[:6], now - row[6])
            for row in self.db.execute(
                "SELECT pool, region, endpoint, operation, count(*), total(bytes), min(stored) "
                "FROM cache GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
            )
        ]

    # -- counters and budgets -------------------------------------------------------------

    def add_counts(self, counts: Mapping[tuple, Mapping[str, float]]) -> None:
        """Add each (pool, region, endpoint, operation)'s counts to the totals."""
        columns = ", ".join(COUNTERS)
        updates = ", ".join(f"{name} = {name} + excluded.{name}" for name in COUNTERS)
        with self.transaction():
            for where, values in counts.items():
                self.db.execute(
                    f"INSERT INTO counters (pool, region, endpoint, operation, {columns}) "
                    f"VALUES (?, ?, ?, ?, {', '.join('?' * len(COUNTERS))}) "
                    f"ON CONFLICT (pool, region, endpoint, operation) DO UPDATE SET {updates}",
                    (*where, *(values.get(name, 0) for name in COUNTERS)),
                )

    def counters(self) -> list[tuple]:
        return self.db.execute(
            f"SELECT pool, region, endpoint, operation, {', '.join(COUNTERS)} FROM counters "
            "ORDER BY 1, 2, 3, 4"
        ).fetchall()

    def note_budget(self, window: str, region: str, endpoint: str, cap: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO budgets VALUES (?, ?, ?, ?, ?)",
            (window, region, endpoint, cap, time.monotonic()),
        )

    def budgets(self) -> list[tuple]:
        return self.db.execute(
            "SELECT window, region, endpoint, max(cap) FROM budgets GROUP BY 1, 2, 3 ORDER BY 1"
        ).fetchall()


def _boot_id() -> bytes:
    from .quota import boot_id  # quota imports nothing of this module; this keeps it so

    return boot_id()


_store: Store | None = None
_failed: str | None = None  # why the file could not be opened (once per process)


def store() -> Store | None:
    """This process's connection to the shared state, None when it cannot be used (or off
    the backend's thread)."""
    global _store, _failed
    if not backend.on_backend_thread() or _failed is not None:
        return None
    if _store is not None and _store.pid == os.getpid():
        return _store
    data_directory = backend.data_directory()
    if data_directory is None:
        return None  # outside a backend: nothing to share
    try:
        from .quota import shared_directory

        path = os.path.join(shared_directory(data_directory), FILE)
        try:
            _store = Store(path)
        except sqlite3.OperationalError:
            return None  # busy (many backends opening it at once): try again next time
        except sqlite3.DatabaseError:
            # Not a database (damaged, or something else in its place): it holds nothing
            # that cannot be read again, so it is made anew, once.
            for name in (path, path + "-wal", path + "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
            _store = Store(path)
    except sqlite3.OperationalError:
        return None
    except (sqlite3.Error, OSError) as exc:
        _failed = f"{type(exc).__name__}: {exc}"
        return None
    except CognitoFdwError as exc:  # an unsafe directory: the rate window says so itself
        _failed = exc.message
        return None
    return _store


def safely(action, default=None):
    """``action(store)``, or ``default`` when there is no store or SQLite fails (busy,
    full, damaged): the shared state is an aid, never a reason for a query to fail."""
    found = store()
    if found is None:
        return default
    try:
        return action(found)
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            if found.db.in_transaction:
                found.db.execute("ROLLBACK")
        return default


def unavailable() -> str | None:
    """Why the shared state cannot be used in this process (None: it can, or was not tried)."""
    return _failed
