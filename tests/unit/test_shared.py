"""The shared state's store (cognito_fdw/shared.py) on a file of its own: bounded entries,
each reader's own TTL, what a key hides, counters that add up."""

from __future__ import annotations

import datetime
import sqlite3

from cognito_fdw.aws import shared
from cognito_fdw.aws.shared import Store

WHERE = ("us-east-1_pool", "us-east-1", "AWS")


def test_an_entry_is_served_within_each_readers_ttl_and_keeps_timestamps(tmp_path):
    store = Store(str(tmp_path / "state.sqlite3"))
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    value = [{"Username": "alice", "UserCreateDate": when, "Enabled": True}]
    store.put("k", WHERE, "ListUsers", value)
    found, age = store.get("k", ttl=10)
    assert found == value and 0 <= age < 10
    assert store.get("k", ttl=0.0) is None  # a reader with a lower TTL asks again
    assert store.get("other", ttl=10) is None
    # Another connection (another backend) reads the same entry.
    assert Store(str(tmp_path / "state.sqlite3")).get("k", ttl=10)[0] == value


def test_entries_are_bounded_by_size_and_count(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "state.sqlite3"))
    assert not store.put("big", WHERE, "ListUsers", ["x" * shared.MAX_ENTRY_BYTES])
    assert store.get("big", ttl=10) is None
    monkeypatch.setattr(shared, "MAX_ENTRIES", 5)
    for i in range(12):
        store.put(f"k{i}", WHERE, "ListUsers", [i])
    kept = [i for i in range(12) if store.get(f"k{i}", ttl=10) is not None]
    assert len(kept) <= 5 and 11 in kept  # the oldest went first
    monkeypatch.setattr(shared, "MAX_BYTES", 100)
    store.put("k12", WHERE, "ListUsers", ["y" * 60])
    assert store.db.execute("SELECT total(bytes) FROM cache").fetchone()[0] <= 100


def test_forget_drops_one_pools_operations_only(tmp_path):
    store = Store(str(tmp_path / "state.sqlite3"))
    other = ("us-east-1_other", "us-east-1", "AWS")
    store.put("a", WHERE, "ListUsersInGroup", [1])
    store.put("b", WHERE, "ListUsers", [1])
    store.put("c", other, "ListUsersInGroup", [1])
    assert store.forget(WHERE, ("ListUsersInGroup", "AdminListGroupsForUser")) == 1
    assert [k for k in "abc" if store.get(k, 10)] == ["b", "c"]
    assert store.forget() == 2


def test_keys_are_hmacs_with_the_servers_own_key(tmp_path):
    first = Store(str(tmp_path / "one.sqlite3"))
    again = Store(str(tmp_path / "one.sqlite3"))
    elsewhere = Store(str(tmp_path / "two.sqlite3"))
    parts = (("keys", "AKID", None, None, None, ("secret", None)), WHERE, "ListUsers", ())
    assert first.digest(parts) == again.digest(parts)  # every backend finds the entry
    assert first.digest(parts) != elsewhere.digest(parts)  # no precomputed key works
    assert "secret" not in first.digest(parts)
    data = (tmp_path / "one.sqlite3").read_bytes()
    assert b"secret" not in data and b"AKID" not in data


def test_counters_add_up_per_pool_and_operation(tmp_path):
    store = Store(str(tmp_path / "state.sqlite3"))
    store.add_counts({(*WHERE, "ListUsers"): {"requests": 2, "rows": 120, "cache_hits": 1}})
    store.add_counts({(*WHERE, "ListUsers"): {"requests": 1, "cognito_ms": 5.5}})
    (row,) = store.counters()
    names = ("pool", "region", "endpoint", "operation", *shared.COUNTERS)
    found = dict(zip(names, row))
    assert found["requests"] == 3 and found["rows"] == 120 and found["cache_hits"] == 1
    assert found["cognito_ms"] == 5.5


def test_a_damaged_file_is_made_anew_and_an_unusable_one_fails_nothing(tmp_path, monkeypatch):
    path = tmp_path / "cognito_fdw_quota"
    path.mkdir(mode=0o700)
    (path / shared.FILE).write_bytes(b"not a database" * 100)
    monkeypatch.setattr(shared.backend, "data_directory", lambda: str(tmp_path))
    monkeypatch.setattr(shared, "_store", None)
    monkeypatch.setattr(shared, "_failed", None)
    store = shared.store()
    assert store is not None and store.put("k", WHERE, "ListUsers", [1])
    # A directory the server's OS user could not trust: no store, and no query fails.
    monkeypatch.setattr(shared, "_store", None)
    path.chmod(0o755)
    assert shared.store() is None
    assert "mode 0755, not 0700" in shared.unavailable()
    assert shared.safely(lambda store: 1 / 0, "default") == "default"


def test_a_busy_file_is_tried_again_not_given_up(tmp_path, monkeypatch):
    directory = tmp_path / "cognito_fdw_quota"
    directory.mkdir(mode=0o700)
    Store(str(directory / shared.FILE))  # made, in WAL mode
    monkeypatch.setattr(shared.backend, "data_directory", lambda: str(tmp_path))
    monkeypatch.setattr(shared, "_store", None)
    monkeypatch.setattr(shared, "_failed", None)
    holder = sqlite3.connect(str(directory / shared.FILE), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another backend in the middle of a write
    assert shared.store() is None
    assert shared.unavailable() is None
    holder.execute("ROLLBACK")
    assert shared.store() is not None
