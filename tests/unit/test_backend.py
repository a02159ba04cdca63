"""Only the backend's thread calls into PostgreSQL (docs/multicorn.md H8: no PostgreSQL call off the
backend thread): the guard refuses
every other thread, and a scan's workers never resolve credentials (they use a client
resolved first).

The scans run the real Pool and client_for against moto's in-process Cognito; only
``secrets.read_secret`` is replaced, by one that records the thread it runs on.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import uuid

import boto3
import moto
import pytest

from cognito_fdw.aws import client, scan, secrets
from cognito_fdw.aws.client import Pool, Stats
from cognito_fdw.aws.vaultref import VaultRef
from cognito_fdw.options import parse_options
from cognito_fdw.pg import backend, catalog, dateguard
from cognito_fdw.pg.backend import OffBackendThread
from cognito_fdw.plans import ADMIN_GET_USER, LIST_USERS, LOOKUPS, PARTS, SCAN, Plan, Request
from cognito_fdw.pushdown import PARTITIONS
from cognito_fdw.tools.seed import create_users

from ..support.pool import new_user

REGION = "us-east-1"


def on_a_worker(fn, *args):
    """What ``fn(*args)`` returns or raises when run on a thread other than this one."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="not-the-backend")
    thread.start()
    thread.join()
    return outcome


BACKEND_ONLY = {
    "backend.statement_started": lambda: backend.statement_started(),
    "catalog.foreign_table_name": lambda: catalog.foreign_table_name(object()),
    "catalog.remember_table": lambda: catalog.remember_table(object()),
    "backend.current_role_is_superuser": lambda: backend.current_role_is_superuser(),
    "backend.report": lambda: backend.report(pytest.fail, "never logged", logging.DEBUG),
    "backend.current_role": lambda: backend.current_role(),
    "backend.server_address": lambda: backend.server_address(),
    "catalog.nondeterministic_collations": lambda: catalog.nondeterministic_collations(),
    "secrets.read_secret": lambda: secrets.read_secret(VaultRef("vault.s", "name", "n")),
    "client.client_for": lambda: client.client_for(
        parse_options({"user_pool_id": f"{REGION}_Abc", "object": "users"})
    ),
}


@pytest.mark.parametrize("name", BACKEND_ONLY)
def test_calls_into_postgres_refuse_any_other_thread(name):
    outcome = on_a_worker(BACKEND_ONLY[name])
    error = outcome.get("error")
    assert isinstance(error, OffBackendThread), outcome
    assert error.message.startswith(f"cognito_fdw internal error: {name} called from thread ")
    assert "not-the-backend" in error.message and "bug in cognito_fdw" in error.hint


def test_on_the_backend_thread_the_same_calls_run():
    # Outside a backend the symbols are absent: each answers as documented instead.
    assert backend.statement_started() is None
    assert catalog.foreign_table_name(object()) is None
    assert backend.current_role_is_superuser() is False
    assert dateguard.guard_date_conversions() is False  # CPython's own outside PostgreSQL
    assert backend.server_address() == {}
    assert catalog.nondeterministic_collations() == ()
    logged = []
    backend.report(lambda message, level: logged.append(message), "logged", logging.DEBUG)
    assert logged == ["logged"]


def test_any_thread_may_read_the_cancel_flags():
    assert on_a_worker(backend.cancel_pending) == {"value": False}


class Vault:
    """A stand-in for secrets.read_secret: the secret, and the thread of every read."""

    def __init__(self):
        self.threads = []

    def __call__(self, ref):
        self.threads.append(threading.current_thread().name)
        return "vault-secret"


@pytest.fixture
def vault_pool(monkeypatch):
    """A real Pool on moto's in-process Cognito with a vault secret read for every resolve."""
    vault = Vault()
    monkeypatch.setattr(secrets, "read_secret", vault)
    monkeypatch.setattr(client, "_clients", {})
    with moto.mock_aws():
        cognito = boto3.client("cognito-idp", region_name=REGION)
        pool_id = cognito.create_user_pool(PoolName="threads")["UserPool"]["Id"]
        create_users(cognito, pool_id, (new_user(f"u{i:03d}") for i in range(130)))
        options = parse_options({
            "user_pool_id": pool_id, "object": "users", "aws_access_key_id": "AKIDVAULT",
            "api_key_name": f"n{uuid.uuid4().hex[:6]}", "secret_cache_seconds": "0",
            "scan_workers": "4",
        })  # fmt: skip
        yield Pool(options), vault


def names(plan, pool):
    return sorted(u["Username"] for u in scan.run(plan, pool, Stats(), scan.LookupCache()))


def test_workers_never_resolve_credentials(vault_pool):
    pool, vault = vault_pool
    everyone = [f"u{i:03d}" for i in range(130)]
    wanted = ["u007", "u042", "nobody", "u129", "u100", "u001"]
    lookups = Plan(
        LOOKUPS, tuple(Request(ADMIN_GET_USER, username=n) for n in wanted), 6, workers=4
    )
    parts = Plan(
        PARTS,
        tuple(Request(LIST_USERS, filter=f'sub ^= "{p}"') for p in PARTITIONS),
        130,
        workers=4,
    )
    sequential = Plan(SCAN, (Request(LIST_USERS),), 130)
    assert names(lookups, pool) == sorted(set(wanted) - {"nobody"})
    assert names(parts, pool) == everyone
    assert names(sequential, pool) == everyone
    # Read on the backend's thread, once per scan: secret_cache_seconds 0 still re-reads.
    assert vault.threads == [threading.main_thread().name] * 3


def test_a_pool_that_is_not_pinned_refuses_a_worker(vault_pool):
    pool, vault = vault_pool
    outcome = on_a_worker(pool.get_user, Stats(), "u001")
    assert isinstance(outcome.get("error"), OffBackendThread)
    assert "client.client_for" in outcome["error"].message
    assert vault.threads == []
    pinned = pool.pinned()
    assert on_a_worker(pinned.get_user, Stats(), "u001")["value"]["Username"] == "u001"
    assert vault.threads == [threading.main_thread().name]


def test_the_cancellable_helper_thread_gets_a_resolved_client(vault_pool, monkeypatch):
    pool, vault = vault_pool
    # As inside a backend: requests from the backend's thread go through a helper thread.
    monkeypatch.setattr(backend, "_interrupt_pending", ctypes.c_int(0))
    sent_from = []
    pool.client.meta.events.register(
        "before-send.cognito-idp", lambda **_: sent_from.append(threading.current_thread().name)
    )
    vault.threads.clear()
    assert pool.get_user(Stats(), "u002")["Username"] == "u002"
    assert sent_from == ["cognito-fdw-request"]
    assert vault.threads == [threading.main_thread().name]


# (client_min_messages, log_min_messages, Multicorn's level) -> shown, as errstart() decides;
# PostgreSQL's elevels: DEBUG2 13, DEBUG1 14, LOG 15, NOTICE 18, WARNING 19, ERROR 21.
SHOWN = [
    (18, 19, logging.DEBUG, False),  # the defaults: a DEBUG line goes nowhere
    (14, 19, logging.DEBUG, True),  # client_min_messages = debug1 (the tests' accounting)
    (13, 19, logging.DEBUG, True),  # debug2 shows debug1 as well
    (18, 14, logging.DEBUG, True),  # log_min_messages = debug1: the log shows it
    (18, 15, logging.DEBUG, False),  # log_min_messages = log: only LOG and FATAL+ are logged
    (21, 15, logging.WARNING, False),  # and a client at error shows no WARNING
    (18, 19, logging.INFO, True),  # Multicorn's INFO is a NOTICE: shown by default
    (19, 19, logging.INFO, False),  # client_min_messages = warning
    (19, 19, logging.WARNING, True),
    (21, 21, logging.WARNING, False),  # both at error
]


@pytest.mark.parametrize(("client", "log", "level", "expected"), SHOWN)
def test_a_report_is_sent_only_where_postgres_would_show_it(
    monkeypatch, client, log, level, expected
):
    monkeypatch.setattr(backend, "_client_min_messages", ctypes.c_int(client))
    monkeypatch.setattr(backend, "_log_min_messages", ctypes.c_int(log))
    assert backend.shown(level) is expected
    logged = []
    backend.report(lambda message, lvl: logged.append(message), "line", level)
    assert logged == (["line"] if expected else [])


def test_on_python_3_14_a_report_goes_to_stderr_never_to_multicorn(monkeypatch, capsys):
    monkeypatch.setattr(backend, "_client_min_messages", ctypes.c_int(14))  # debug1
    monkeypatch.setattr(backend, "_log_min_messages", ctypes.c_int(19))
    monkeypatch.setattr(backend, "LOG_CALL_CRASHES", True)
    backend.report(lambda message, level: pytest.fail("Multicorn's log call crashes"), "l", 10)
    assert capsys.readouterr().err == "DEBUG:  l\n"
    monkeypatch.setattr(backend, "_client_min_messages", ctypes.c_int(19))  # warning
    backend.report(lambda message, level: pytest.fail("not shown"), "l", logging.DEBUG)
    assert capsys.readouterr().err == ""
