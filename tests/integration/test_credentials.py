"""Tier 2: every credential source, the guard on user mappings, and leak tests.

They run on the server and moto of tests/support/credentials.py (fixtures ``aws``, ``keyed``
and ``admin``): moto checks every signature, so a query only succeeds with credentials moto
issued, and the server has AWS_* keys in its environment (the default chain) and a shared
credentials file in its HOME (``aws_profile``).
"""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from cognito_fdw.scrubbing import MIN_LINE

from ..support.credentials import (
    EXTERNAL_ID,
    USERS,
    error_in_session,
    keys_mapping,
    make_server,
    usernames,
)
from ..support.encodings import ENCODERS
from ..support.postgres import literal, new_role, role_dsn
from ..support.reliability import record

SECRET = "LeakCanarySecret0123456789abcdefghijklmnop"  # a known secret for the leak tests


# -- each source -------------------------------------------------------------------------


def test_keys_in_a_user_mapping(keyed, admin, aws):
    table = make_server(admin, aws, mapping=keys_mapping(aws))
    assert usernames(keyed.dsn, table) == USERS


def test_wrong_keys_are_refused_so_the_sources_below_prove_something(keyed, admin, aws):
    key_id, _ = aws.keys["keys"]
    table = make_server(admin, aws, mapping={"aws_access_key_id": key_id,
                                             "aws_secret_access_key": "wrong"})  # fmt: skip
    err = error_in_session(keyed.dsn, f"SELECT * FROM {table}")
    assert re.match(r"Cognito \w+ failed", err.diag.message_primary)


def test_default_chain_uses_the_server_environment(keyed, admin, aws):
    table = make_server(admin, aws)
    assert usernames(keyed.dsn, table) == USERS


def test_profile_of_the_server_os_user(keyed, admin, aws):
    table = make_server(admin, aws, aws_profile="fdwprofile")
    assert usernames(keyed.dsn, table) == USERS


def test_missing_profile_is_named(keyed, admin, aws):
    table = make_server(admin, aws, aws_profile="nosuchprofile")
    err = error_in_session(keyed.dsn, f"SELECT * FROM {table}")
    assert err.diag.message_primary == (
        "AWS profile 'nosuchprofile' (option aws_profile) was not found"
    )
    assert "~/.aws/credentials" in err.diag.message_hint


def test_assume_role_on_top_of_keys_with_external_id(keyed, admin, aws):
    session = f"t-{uuid.uuid4().hex[:8]}"
    table = make_server(
        admin, aws, mapping=keys_mapping(aws, "limited"),
        role_arn="arn:aws:iam::123456789012:role/guarded", external_id=EXTERNAL_ID,
        role_session_name=session, sts_endpoint_url=aws.url,
    )  # fmt: skip
    assert usernames(keyed.dsn, table) == USERS
    assert aws.assumed_roles(session) == 1
    wrong = make_server(
        admin, aws, mapping=keys_mapping(aws, "limited"),
        role_arn="arn:aws:iam::123456789012:role/guarded", external_id="wrong",
        sts_endpoint_url=aws.url,
    )  # fmt: skip
    assert (
        "(AccessDenied)"
        in error_in_session(keyed.dsn, f"SELECT * FROM {wrong}").diag.message_primary
    )


def test_assume_role_on_top_of_the_default_chain(keyed, admin, aws):
    session = f"t-{uuid.uuid4().hex[:8]}"
    table = make_server(
        admin, aws, role_arn="arn:aws:iam::123456789012:role/reader",
        role_session_name=session, sts_endpoint_url=aws.url,
    )  # fmt: skip
    assert usernames(keyed.dsn, table) == USERS


def test_assumed_role_is_kept_until_near_expiry_then_refreshed(keyed, admin, aws):
    long_session, short_session = f"l-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    role = {"role_arn": "arn:aws:iam::123456789012:role/reader", "sts_endpoint_url": aws.url}
    long = make_server(admin, aws, role_session_name=long_session, **role)
    # 900 s credentials are inside botocore's 15-minute refresh window from the start.
    short = make_server(
        admin, aws, role_session_name=short_session, role_duration_seconds="900", **role
    )
    with psycopg.connect(keyed.dsn, autocommit=True) as conn:
        for _ in range(3):
            conn.execute(f"SELECT * FROM {long}").fetchall()
            conn.execute(f"SELECT * FROM {short}").fetchall()
    assert aws.assumed_roles(long_session) == 1
    assert aws.assumed_roles(short_session) >= 3


def test_assume_role_refused_by_iam_is_reported_as_such(keyed, admin, aws):
    table = make_server(
        admin, aws, mapping=keys_mapping(aws, "limited"),
        role_arn="arn:aws:iam::123456789012:role/other", sts_endpoint_url=aws.url,
    )  # fmt: skip
    err = error_in_session(keyed.dsn, f"SELECT * FROM {table}")
    assert err.diag.message_primary.startswith(
        "STS AssumeRole of arn:aws:iam::123456789012:role/other failed ("
    )
    assert "trust policy" in err.diag.message_hint


# -- the guard ----------------------------------------------------------------------------


def test_guard_refuses_a_hostile_user_mapping_from_a_role_with_usage(keyed, admin, aws):
    table = make_server(admin, aws, mapping=keys_mapping(aws))
    role = new_role(admin)
    admin.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    dsn = role_dsn(keyed.dsn, role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for hostile in ("wrapper 'cognito_fdw.fdw.CognitoFdw'", "endpoint_url 'http://evil:1'",
                        "secrets_conninfo 'host=evil'", "aws_profile 'admin'",
                        "role_arn 'arn:aws:iam::123456789012:role/reader'"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cognito_fdw: "):
                conn.execute(
                    f"CREATE USER MAPPING FOR CURRENT_USER SERVER {table} OPTIONS ({hostile})"
                )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not set endpoint_url"):
            conn.execute(
                f"CREATE FOREIGN TABLE {role}.t (username text) SERVER {table} "
                "OPTIONS (object 'users', endpoint_url 'http://evil:1')"
            )
        key_id, secret = aws.keys["keys"]
        conn.execute(
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER {table} OPTIONS "
            f"(aws_access_key_id {literal(key_id)}, aws_secret_access_key {literal(secret)})"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not set endpoint_url"):
            conn.execute(
                f"ALTER USER MAPPING FOR CURRENT_USER SERVER {table} "
                "OPTIONS (ADD endpoint_url 'http://evil:1')"
            )
    assert usernames(dsn, table) == USERS


def test_guard_can_refuse_plain_text_keys_on_servers(keyed, admin, aws):
    admin.execute("UPDATE cognito_fdw_guard.policy SET plaintext_keys = 'user_mapping'")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="plain-text secret key"):
            make_server(admin, aws, aws_access_key_id="AKIDX", aws_secret_access_key="x")
        assert make_server(admin, aws, mapping=keys_mapping(aws))
    finally:
        admin.execute("UPDATE cognito_fdw_guard.policy SET plaintext_keys = 'allowed'")


# -- leaks ------------------------------------------------------------------------------


def what_the_statements_show(dsns, tables, admin=None) -> tuple[list[str], int]:
    """SELECT and EXPLAIN VERBOSE of each table in a session on each dsn, DEBUG1 on: the text
    of every row, notice and error they gave (and with ``admin``, pg_stat_activity while the
    session is open), and how many statements failed."""
    seen, errors = [], 0
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET client_min_messages = debug1")
            conn.add_notice_handler(
                lambda d: seen.append(f"{d.message_primary} {d.message_detail}")
            )
            for table in tables:
                for sql in (f"SELECT * FROM {table}", f"EXPLAIN VERBOSE SELECT * FROM {table}"):
                    try:
                        seen.extend(str(row) for row in conn.execute(sql).fetchall())
                    except psycopg.Error as exc:
                        d = exc.diag
                        seen.append(f"{exc} {d.message_detail} {d.message_hint} {d.context}")
                        errors += 1
            if admin is not None:
                seen.extend(str(r) for r in admin.execute("SELECT * FROM pg_stat_activity"))
    return seen, errors


def test_no_error_path_leaks_a_secret(keyed, admin, aws):
    key_id, _ = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret(%s, %s)", (SECRET, name))
    admin.execute("SELECT vault.create_secret(%s, %s)", (SECRET, f"{name}_mapped"))
    role = new_role(admin)
    keys = {"aws_access_key_id": "AKIDLEAK", "aws_secret_access_key": SECRET,
            "aws_session_token": SECRET + "tok"}  # fmt: skip
    role_opts = {"role_arn": "arn:aws:iam::123456789012:role/other", "external_id": EXTERNAL_ID,
                 "sts_endpoint_url": aws.url}  # fmt: skip
    vault = {"aws_access_key_id": key_id, "api_key_name": name}
    # The guard refuses these two at CREATE; written past it, the wrapper refuses them too.
    admin.execute("ALTER EVENT TRIGGER cognito_fdw_guard DISABLE")
    try:
        unguarded = [
            make_server(admin, aws, mapping=keys, retry_mode="bogus"),  # option error
            make_server(admin, aws, mapping=keys, max_attempt="2"),  # unknown option
        ]
    finally:
        admin.execute("ALTER EVENT TRIGGER cognito_fdw_guard ENABLE")
    tables = [
        *unguarded,
        make_server(admin, aws, mapping=keys),  # signature refused
        make_server(admin, aws, mapping={"aws_secret_access_key": SECRET}),  # missing key id
        make_server(admin, aws, mapping=keys, endpoint_url="http://127.0.0.1:9"),  # unreachable
        make_server(admin, aws, **vault),  # vault secret refused by moto
        # A mapping's own secret (no server names it), which the role may not read.
        make_server(admin, aws, mapping={**vault, "api_key_name": f"{name}_mapped"}),
        make_server(admin, aws, **vault, api_key_id=SECRET),  # both id and name
        make_server(admin, aws, aws_access_key_id=key_id, api_key_id="no-uuid"),  # bad id
        make_server(admin, aws, mapping=keys_mapping(aws, "limited"), **role_opts),  # STS
        make_server(admin, aws, **vault, **role_opts),  # STS with a vault secret
        make_server(admin, aws, aws_profile="nosuchprofile", **role_opts),
    ]
    dsns = (keyed.dsn, role_dsn(keyed.dsn, role))
    seen, errors = what_the_statements_show(dsns, tables, admin)
    assert errors == 2 * 2 * len(tables)  # every statement took an error path
    assert any("may not read the secret" in s for s in seen)
    assert any("STS AssumeRole" in s for s in seen)
    everything = "\n".join(seen) + keyed.log()
    for secret in (SECRET, EXTERNAL_ID):
        assert secret not in everything
    assert "Traceback" not in everything


# Values a credential option can hold: quotes, backslashes, %, +, spaces and non-ASCII (in
# and beyond Latin-1, which HTTP headers are encoded in), and a line break (refused when the
# options are parsed, or else sent: either way it must not show).
ODD_SECRETS = {
    "aws_secret_access_key": "LeakCanaryKey'\"\\%+ é/=&?x",
    "aws_session_token": "LeakCanaryTok'\"\\%2B+ é☃/=&?x",
}


ODD_TOKENS = ("LeakCanaryTok'\"\\%+ é=x", "LeakCanaryHeadLine\nLeakCanaryTailLine")


def test_odd_credentials_show_in_no_encoding_in_errors_or_the_log(keyed, admin, aws):
    role = new_role(admin)
    mappings = [{"aws_access_key_id": "AKIDODD", **ODD_SECRETS}]
    mappings += [{**keys_mapping(aws), "aws_session_token": token} for token in ODD_TOKENS]
    # Written past the guard, which refuses a control character already at CREATE: here
    # the wrapper's own refusal at the first query is under test.
    admin.execute("ALTER EVENT TRIGGER cognito_fdw_guard DISABLE")
    try:
        tables = [make_server(admin, aws, mapping=mapping) for mapping in mappings]
    finally:
        admin.execute("ALTER EVENT TRIGGER cognito_fdw_guard ENABLE")
    seen, errors = what_the_statements_show((keyed.dsn, role_dsn(keyed.dsn, role)), tables)
    assert errors == 2 * 2 * len(tables)  # every statement was refused
    everything = "\n".join(seen) + keyed.log()
    assert "Traceback" not in everything
    for secret in (*ODD_SECRETS.values(), *ODD_TOKENS):
        parts = [secret, *(line for line in secret.splitlines() if len(line) >= MIN_LINE)]
        for part in parts:
            for name, encode in ENCODERS.items():
                assert encode(part) not in everything, f"{name} of {part!r} shows"


def test_through_a_view_the_querying_roles_mapping_signs_not_the_view_owners(keyed, admin, aws):
    """PostgreSQL's rule for a foreign table read through a view is the view owner's user
    mapping; Multicorn looks up the mapping of the current user (GetUserId()), and the
    wrapper only ever sees the merged options.  So the querying role's mapping signs (and a
    vault secret a mapping names is read as that role): SECURITY.md says so.  This test
    keeps that statement true."""
    key_id, _ = aws.keys["keys"]
    table = make_server(admin, aws)
    owner, reader = new_role(admin), new_role(admin)
    admin.execute(
        f"CREATE USER MAPPING FOR {owner} SERVER {table} OPTIONS ("
        + ", ".join(f"{k} {literal(v)}" for k, v in keys_mapping(aws).items())
        + ")"
    )
    admin.execute(
        f"CREATE USER MAPPING FOR {reader} SERVER {table} OPTIONS "
        f"(aws_access_key_id {literal(key_id)}, aws_secret_access_key 'wrong')"
    )
    admin.execute(f"CREATE VIEW public.v_{table} AS SELECT username FROM public.{table}")
    admin.execute(f"ALTER VIEW public.v_{table} OWNER TO {owner}")
    admin.execute(f"GRANT SELECT ON public.v_{table} TO {reader}")
    assert usernames(role_dsn(keyed.dsn, owner), f"public.v_{table}") == USERS
    err = error_in_session(role_dsn(keyed.dsn, reader), f"SELECT * FROM public.v_{table}")
    record(
        "attack",
        "a role reads a foreign table through a view owned by a role with another user mapping",
        "the querying role's mapping signs (Multicorn's choice; SECURITY.md): "
        f"{err.diag.message_primary}"[:160],
    )
    assert re.match(r"Cognito \w+ failed", err.diag.message_primary)
