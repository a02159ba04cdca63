"""Tier 2: every credential source, vault, the guard, and leak tests, on a server of their own.

The moto server here enforces IAM authentication once the fixtures are set up, so a query
only succeeds with credentials moto issued: the secret access key must really arrive.
The PostgreSQL server has AWS_* keys in its environment (for the default chain) and a
shared credentials file in its HOME (for aws_profile).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import urllib.request
import uuid

import boto3
import psycopg
import pytest

from cognito_fdw.errors import MIN_LINE
from cognito_fdw.secrets import APPLICATION_NAME
from cognito_fdw.tools.devstack import LocalPostgres, MotoServer
from cognito_fdw.tools.host import checkout

from ..support.encodings import ENCODERS
from .seeddata import POOL_REGION

SECRET = "LeakCanarySecret0123456789abcdefghijklmnop"  # a known secret for the leak tests
EXTERNAL_ID = "LeakCanaryExternalId-5b1e"
ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Aws:
    """The authenticated moto server and what was created in it."""

    def __init__(self, url: str):
        self.url = url
        self.keys = {}

    def client(self, service, who="admin"):
        key_id, secret = self.keys[who]
        return boto3.client(
            service, region_name=POOL_REGION, endpoint_url=self.url,
            aws_access_key_id=key_id, aws_secret_access_key=secret,
        )  # fmt: skip

    def assumed_roles(self, session_name: str) -> int:
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json") as response:
            data = json.load(response)
        roles = data.get("sts", {}).get("AssumedRole", [])
        return sum(1 for r in roles if r.get("session_name") == session_name)


@pytest.fixture(scope="module")
def aws():
    server = MotoServer().start()
    aws = Aws(server.url)
    iam = boto3.client(
        "iam", region_name=POOL_REGION, endpoint_url=server.url,
        aws_access_key_id="AKIDSETUP", aws_secret_access_key="setup",
    )  # fmt: skip
    for who in ("admin", "keys", "env", "profile", "vault", "limited"):
        iam.create_user(UserName=who)
        policy = ALLOW_ALL
        if who == "limited":  # may assume only the reader role
            policy = json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "cognito-idp:*", "Resource": "*"},
                {"Effect": "Allow", "Action": "sts:AssumeRole",
                 "Resource": ["arn:aws:iam::123456789012:role/reader",
                              "arn:aws:iam::123456789012:role/guarded"]}]})  # fmt: skip
        iam.put_user_policy(UserName=who, PolicyName="p", PolicyDocument=policy)
        key = iam.create_access_key(UserName=who)["AccessKey"]
        aws.keys[who] = (key["AccessKeyId"], key["SecretAccessKey"])
    for role, condition in (("reader", None), ("other", None), ("guarded", EXTERNAL_ID)):
        trust = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": "*"}}
        if condition:
            trust["Condition"] = {"StringEquals": {"sts:ExternalId": condition}}
        document = json.dumps({"Version": "2012-10-17", "Statement": [trust]})
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=document)
        iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=ALLOW_ALL)
    cognito = aws.client("cognito-idp")
    aws.pool_id = cognito.create_user_pool(PoolName="creds")["UserPool"]["Id"]
    for i in range(3):
        cognito.admin_create_user(UserPoolId=aws.pool_id, Username=f"cred{i}")
    # From here on every request must be signed with keys moto issued.
    request = urllib.request.Request(
        f"{server.url}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request).close()
    yield aws
    server.stop()


@pytest.fixture(scope="module")
def pg(aws):
    env_key, env_secret = aws.keys["env"]
    pg = LocalPostgres(env={"AWS_ACCESS_KEY_ID": env_key, "AWS_SECRET_ACCESS_KEY": env_secret})
    pg.start()
    aws_dir = pg.base / ".aws"
    aws_dir.mkdir()
    key_id, secret = aws.keys["profile"]
    (aws_dir / "credentials").write_text(
        f"[fdwprofile]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    )
    if pg.user is not None:
        for path in (aws_dir, aws_dir / "credentials"):
            os.chown(path, pg.user.pw_uid, pg.user.pw_gid)
    (aws_dir / "credentials").chmod(0o600)
    pg.key_file = pg.base / "vault.keys"
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.dsn]
    env = {**os.environ, "PGOPTIONS": "-c log_statement=none"}
    subprocess.run(
        [*psql, "-v", f"user_pool_id={aws.pool_id}", "-v", f"endpoint_url={aws.url}",
         "-f", str(checkout() / "sql" / "cognito_fdw.sql")], check=True, env=env,
    )  # fmt: skip
    subprocess.run(
        [*psql, "-v", f"vault_key_file={pg.key_file}", "-f", str(checkout() / "sql" / "vault.sql")],
        check=True, env=env,
    )  # fmt: skip
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        # Statements are logged from now on, so the loopback's show up in the log.
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        conn.execute("SELECT pg_reload_conf()")
    yield pg
    log = pg.log()
    pg.cleanup()
    assert "terminated by signal" not in log and "PANIC" not in log


@pytest.fixture
def admin(pg):
    """A superuser connection whose own statements (which hold secrets) are not logged."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("SET log_statement = 'none'")
        yield conn


def make_server(conn, aws, mapping: dict | None = None, **options) -> str:
    """A cognito_fdw server with ``options``, a PUBLIC mapping and a users table; its table."""
    name = f"c_{uuid.uuid4().hex[:8]}"
    opts = {"wrapper": "cognito_fdw.CognitoFdw", "user_pool_id": aws.pool_id, **options}
    opts.setdefault("endpoint_url", aws.url)
    conn.execute(
        f"CREATE SERVER {name} FOREIGN DATA WRAPPER multicorn OPTIONS ("
        + ", ".join(f"{k} {_lit(v)}" for k, v in opts.items())
        + ")"
    )
    if mapping:
        conn.execute(
            f"CREATE USER MAPPING FOR PUBLIC SERVER {name} OPTIONS ("
            + ", ".join(f"{k} {_lit(v)}" for k, v in mapping.items())
            + ")"
        )
    conn.execute(
        f"CREATE FOREIGN TABLE public.{name} (username text) SERVER {name} OPTIONS (object 'users')"
    )
    conn.execute(f"GRANT USAGE ON FOREIGN SERVER {name} TO PUBLIC")
    conn.execute(f"GRANT SELECT ON public.{name} TO PUBLIC")
    return name


def usernames(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute(f"SELECT username FROM {table} ORDER BY 1")]


def error_of(dsn: str, sql: str) -> psycopg.Error:
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(psycopg.Error) as info:
        conn.execute(sql).fetchall()
    return info.value


def keys_mapping(aws, who="keys") -> dict:
    key_id, secret = aws.keys[who]
    return {"aws_access_key_id": key_id, "aws_secret_access_key": secret}


USERS = ["cred0", "cred1", "cred2"]

# -- each source -------------------------------------------------------------------------


def test_keys_in_a_user_mapping(pg, admin, aws):
    table = make_server(admin, aws, mapping=keys_mapping(aws))
    assert usernames(pg.dsn, table) == USERS


def test_wrong_keys_are_refused_so_the_sources_below_prove_something(pg, admin, aws):
    key_id, _ = aws.keys["keys"]
    table = make_server(admin, aws, mapping={"aws_access_key_id": key_id,
                                             "aws_secret_access_key": "wrong"})  # fmt: skip
    err = error_of(pg.dsn, f"SELECT * FROM {table}")
    assert re.match(r"Cognito \w+ failed", err.diag.message_primary)


def test_default_chain_uses_the_server_environment(pg, admin, aws):
    table = make_server(admin, aws)
    assert usernames(pg.dsn, table) == USERS


def test_profile_of_the_server_os_user(pg, admin, aws):
    table = make_server(admin, aws, aws_profile="fdwprofile")
    assert usernames(pg.dsn, table) == USERS


def test_missing_profile_is_named(pg, admin, aws):
    table = make_server(admin, aws, aws_profile="nosuchprofile")
    err = error_of(pg.dsn, f"SELECT * FROM {table}")
    assert err.diag.message_primary == (
        "AWS profile 'nosuchprofile' (option aws_profile) was not found"
    )
    assert "~/.aws/credentials" in err.diag.message_hint


def test_vault_secret_by_name_and_by_id(pg, admin, aws):
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    secret_id = admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name)).fetchone()[0]
    by_name = make_server(admin, aws, aws_access_key_id=key_id, api_key_name=name)
    by_id = make_server(admin, aws, aws_access_key_id=key_id, api_key_id=str(secret_id))
    assert usernames(pg.dsn, by_name) == USERS
    assert usernames(pg.dsn, by_id) == USERS
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        plan = [r[0] for r in conn.execute(f"EXPLAIN VERBOSE SELECT * FROM {by_id}")]
    assert (
        "  Multicorn: Cognito: credentials from a secret in vault.decrypted_secrets (by id)" in plan
    )


def test_assume_role_on_top_of_keys_with_external_id(pg, admin, aws):
    session = f"t-{uuid.uuid4().hex[:8]}"
    table = make_server(
        admin, aws, mapping=keys_mapping(aws, "limited"),
        role_arn="arn:aws:iam::123456789012:role/guarded", external_id=EXTERNAL_ID,
        role_session_name=session, sts_endpoint_url=aws.url,
    )  # fmt: skip
    assert usernames(pg.dsn, table) == USERS
    assert aws.assumed_roles(session) == 1
    wrong = make_server(
        admin, aws, mapping=keys_mapping(aws, "limited"),
        role_arn="arn:aws:iam::123456789012:role/guarded", external_id="wrong",
        sts_endpoint_url=aws.url,
    )  # fmt: skip
    assert "(AccessDenied)" in error_of(pg.dsn, f"SELECT * FROM {wrong}").diag.message_primary


def test_assume_role_on_top_of_the_default_chain(pg, admin, aws):
    session = f"t-{uuid.uuid4().hex[:8]}"
    table = make_server(
        admin, aws, role_arn="arn:aws:iam::123456789012:role/reader",
        role_session_name=session, sts_endpoint_url=aws.url,
    )  # fmt: skip
    assert usernames(pg.dsn, table) == USERS


def test_assumed_role_is_kept_until_near_expiry_then_refreshed(pg, admin, aws):
    long_session, short_session = f"l-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    role = {"role_arn": "arn:aws:iam::123456789012:role/reader", "sts_endpoint_url": aws.url}
    long = make_server(admin, aws, role_session_name=long_session, **role)
    # 900 s credentials are inside botocore's 15-minute refresh window from the start.
    short = make_server(
        admin, aws, role_session_name=short_session, role_duration_seconds="900", **role
    )
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        for _ in range(3):
            conn.execute(f"SELECT * FROM {long}").fetchall()
            conn.execute(f"SELECT * FROM {short}").fetchall()
    assert aws.assumed_roles(long_session) == 1
    assert aws.assumed_roles(short_session) >= 3


def test_assume_role_refused_by_iam_is_reported_as_such(pg, admin, aws):
    table = make_server(
        admin, aws, mapping=keys_mapping(aws, "limited"),
        role_arn="arn:aws:iam::123456789012:role/other", sts_endpoint_url=aws.url,
    )  # fmt: skip
    err = error_of(pg.dsn, f"SELECT * FROM {table}")
    assert err.diag.message_primary.startswith(
        "STS AssumeRole of arn:aws:iam::123456789012:role/other failed ("
    )
    assert "trust policy" in err.diag.message_hint


# -- vault ------------------------------------------------------------------------------


def test_vault_key_file_is_private_and_outside_the_table(pg, admin):
    assert pg.key_file.stat().st_mode & 0o077 == 0
    key = pg.key_file.read_text().split("\t")[1].strip()
    admin.execute("SELECT vault.create_secret('x', %s)", (f"k_{uuid.uuid4().hex[:8]}",))
    dump = subprocess.run(
        ["pg_dump", "-d", pg.dsn, "--data-only", "-n", "vault"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert key not in dump


def test_secret_update_is_picked_up_after_the_cache_time(pg, admin, aws):
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    secret_id = admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name)).fetchone()[0]
    fresh = make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, secret_cache_seconds="0"
    )
    cached = make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, secret_cache_seconds="3600"
    )
    with psycopg.connect(pg.dsn, autocommit=True) as held:
        assert [r[0] for r in held.execute(f"SELECT username FROM {cached} ORDER BY 1")] == USERS
        admin.execute("SELECT vault.update_secret(%s, 'not-the-secret')", (secret_id,))
        # The same backend still holds the secret it read; another one reads the new one.
        assert [r[0] for r in held.execute(f"SELECT username FROM {cached} ORDER BY 1")] == USERS
        assert re.match(r"Cognito \w+ failed", str(error_of(pg.dsn, f"SELECT * FROM {fresh}")))
        admin.execute("SELECT vault.update_secret(%s, %s)", (secret_id, secret))
    assert usernames(pg.dsn, fresh) == USERS


def test_key_rotation_re_encrypts_every_secret(pg, admin, aws):
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name))
    table = make_server(admin, aws, aws_access_key_id=key_id, api_key_name=name)
    lines = pg.key_file.read_text().splitlines()
    newest = max(int(line.split("\t")[0]) for line in lines)
    new_line = f"{newest + 1}\t{os.urandom(32).hex()}"
    pg.key_file.write_text("\n".join([*lines, new_line]) + "\n")
    assert admin.execute("SELECT vault.rotate_key()").fetchone()[0] >= 1
    pg.key_file.write_text(new_line + "\n")  # the old key is gone
    rows = admin.execute(
        "SELECT key_id, decrypted_secret FROM vault.decrypted_secrets WHERE name = %s", (name,)
    ).fetchall()
    assert rows == [(newest + 1, secret)]
    assert usernames(pg.dsn, table) == USERS


def test_the_servers_secret_is_used_as_its_owner_and_never_shown_to_its_users(pg, admin, aws):
    # A role with USAGE signs with the server's key; it cannot read the key itself.
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name))
    table = make_server(admin, aws, aws_access_key_id=key_id, api_key_name=name)
    admin.execute(f"CREATE ROLE {role} LOGIN")
    dsn = pg.dsn.replace("user=postgres", f"user={role}")
    assert usernames(dsn, table) == USERS
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT decrypted_secret FROM vault.decrypted_secrets").fetchall()
        # Its own mapping naming the server's secret with another key id is its own secret.
        conn.execute(
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER {table} "
            f"OPTIONS (aws_access_key_id 'AKIDOTHER', api_key_name {_lit(name)})"
        )
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table}")


def test_a_role_that_cannot_read_its_mappings_secret_cannot_use_it(pg, admin, aws):
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name))
    table = make_server(admin, aws, mapping={"aws_access_key_id": key_id, "api_key_name": name})
    admin.execute(f"CREATE ROLE {role} LOGIN")
    dsn = pg.dsn.replace("user=postgres", f"user={role}")
    err = error_of(dsn, f"SELECT * FROM {table}")
    assert err.diag.message_primary == (
        f"role {role} may not read the secret in vault.decrypted_secrets"
    )
    assert f"GRANT SELECT ON vault.decrypted_secrets TO {role}" in err.diag.message_hint
    # Nor through a superuser's session that SET ROLEs to it.
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table}")
    admin.execute(f"GRANT USAGE ON SCHEMA vault TO {role}")
    admin.execute(f"GRANT SELECT ON vault.decrypted_secrets TO {role}")
    assert usernames(dsn, table) == USERS


def test_a_secrets_relation_not_owned_by_a_superuser_is_refused(pg, admin, aws):
    role = f"r_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE ROLE {role}")
    admin.execute(f"CREATE TABLE public.{role} (id int, name text, decrypted_secret text)")
    admin.execute(f"ALTER TABLE public.{role} OWNER TO {role}")
    table = make_server(
        admin, aws, aws_access_key_id="AKIDX", api_key_name="x", secrets_relation=f"public.{role}"
    )
    err = error_of(pg.dsn, f"SELECT * FROM {table}")
    assert err.diag.message_primary == f"secrets relation public.{role} is not owned by a superuser"


def test_the_loopback_shows_no_secret_and_gives_up_on_a_lock(pg, admin, aws):
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name))
    table = make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, secret_cache_seconds="0"
    )
    result = {}
    with psycopg.connect(pg.dsn) as locker:
        locker.execute("LOCK TABLE vault.secrets IN ACCESS EXCLUSIVE MODE")
        reader = threading.Thread(
            target=lambda: result.update(error=error_of(pg.dsn, f"SELECT * FROM {table}"))
        )
        reader.start()
        rows = []
        while reader.is_alive() and not rows:
            rows = admin.execute(
                "SELECT query, wait_event_type FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock'",
                (APPLICATION_NAME,),
            ).fetchall()
        reader.join()
        locker.rollback()
    assert rows, "the loopback connection was never seen waiting"
    # A lock met while parsing leaves pg_stat_activity showing the session's previous
    # statement (the extended protocol reports a statement when it executes): either of the
    # loopback's two statements may show, and neither carries the secret.
    assert "decrypted_secret" in rows[0][0] or "set_config('role'" in rows[0][0]
    assert secret not in repr(rows)
    error = result["error"]
    assert error.diag.message_primary == "reading the secret from vault.decrypted_secrets failed"
    assert "lock timeout" in error.diag.message_detail


# -- the guard ----------------------------------------------------------------------------


def test_guard_refuses_a_hostile_user_mapping_from_a_role_with_usage(pg, admin, aws):
    table = make_server(admin, aws, mapping=keys_mapping(aws))
    role = f"r_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    dsn = pg.dsn.replace("user=postgres", f"user={role}")
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
            f"(aws_access_key_id {_lit(key_id)}, aws_secret_access_key {_lit(secret)})"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not set endpoint_url"):
            conn.execute(
                f"ALTER USER MAPPING FOR CURRENT_USER SERVER {table} "
                "OPTIONS (ADD endpoint_url 'http://evil:1')"
            )
    assert usernames(dsn, table) == USERS


def test_guard_can_refuse_plain_text_keys_on_servers(pg, admin, aws):
    admin.execute("UPDATE cognito_fdw_guard.policy SET plaintext_keys = 'user_mapping'")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="plain-text secret key"):
            make_server(admin, aws, aws_access_key_id="AKIDX", aws_secret_access_key="x")
        assert make_server(admin, aws, mapping=keys_mapping(aws))
    finally:
        admin.execute("UPDATE cognito_fdw_guard.policy SET plaintext_keys = 'allowed'")


# -- leaks ------------------------------------------------------------------------------


def test_no_error_path_leaks_a_secret(pg, admin, aws):
    key_id, _ = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret(%s, %s)", (SECRET, name))
    admin.execute("SELECT vault.create_secret(%s, %s)", (SECRET, f"{name}_mapped"))
    role = f"r_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE ROLE {role} LOGIN")
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
    role_dsn = pg.dsn.replace("user=postgres", f"user={role}")
    seen, errors = [], 0
    for dsn in (pg.dsn, role_dsn):
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
            seen.extend(str(r) for r in admin.execute("SELECT * FROM pg_stat_activity"))
    assert errors == 2 * 2 * len(tables)  # every statement took an error path
    assert any("may not read the secret" in s for s in seen)
    assert any("STS AssumeRole" in s for s in seen)
    everything = "\n".join(seen) + pg.log()
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


def test_odd_credentials_show_in_no_encoding_in_errors_or_the_log(pg, admin, aws):
    role = f"r_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE ROLE {role} LOGIN")
    mappings = [{"aws_access_key_id": "AKIDODD", **ODD_SECRETS}]
    mappings += [{**keys_mapping(aws), "aws_session_token": token} for token in ODD_TOKENS]
    # Written past the guard, which refuses a control character already at CREATE: here
    # the wrapper's own refusal at the first query is under test.
    admin.execute("ALTER EVENT TRIGGER cognito_fdw_guard DISABLE")
    try:
        tables = [make_server(admin, aws, mapping=mapping) for mapping in mappings]
    finally:
        admin.execute("ALTER EVENT TRIGGER cognito_fdw_guard ENABLE")
    seen = []
    for dsn in (pg.dsn, pg.dsn.replace("user=postgres", f"user={role}")):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET client_min_messages = debug1")
            conn.add_notice_handler(
                lambda d: seen.append(f"{d.message_primary} {d.message_detail}")
            )
            for table in tables:
                for sql in (f"SELECT * FROM {table}", f"EXPLAIN VERBOSE SELECT * FROM {table}"):
                    with pytest.raises(psycopg.Error) as info:
                        conn.execute(sql).fetchall()
                    d = info.value.diag
                    seen.append(f"{info.value} {d.message_detail} {d.message_hint} {d.context}")
    everything = "\n".join(seen) + pg.log()
    assert "Traceback" not in everything
    for secret in (*ODD_SECRETS.values(), *ODD_TOKENS):
        parts = [secret, *(line for line in secret.splitlines() if len(line) >= MIN_LINE)]
        for part in parts:
            for name, encode in ENCODERS.items():
                assert encode(part) not in everything, f"{name} of {part!r} shows"


def test_a_failed_vault_call_leaves_its_secret_out_of_the_log(pg, admin):
    # A granted non-superuser: the functions' SET log_min_error_statement works for it only
    # because they run as their (superuser) owner.
    role = f"r_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute(f"ALTER ROLE {role} SET log_statement = 'none'")  # this cluster logs 'all'
    admin.execute(f"GRANT USAGE ON SCHEMA vault TO {role}")
    admin.execute(f"GRANT EXECUTE ON FUNCTION vault.create_secret, vault.update_secret TO {role}")
    name = f"s_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret('first', %s)", (name,))
    secret = f"LeakCanaryVault{uuid.uuid4().hex}"
    failing = [
        ("SELECT vault.create_secret({}, {})", (secret, name)),  # a duplicate name
        ("SELECT vault.update_secret({}, {})", (str(uuid.uuid4()), secret)),  # no such id
    ]
    with psycopg.connect(pg.dsn.replace("user=postgres", f"user={role}")) as conn:
        for template, args in failing:
            # The secret written into the statement, as psql sends it (not a bind parameter).
            statement = psycopg.sql.SQL(template).format(*map(psycopg.sql.Literal, args))
            with pytest.raises(psycopg.Error, match="duplicate key|no secret with id"):
                conn.execute(statement)
            conn.rollback()
    log = pg.log()
    assert "duplicate key value" in log and "vault: no secret with id" in log
    assert secret not in log


def test_a_mapping_cannot_have_the_servers_secret_assume_a_role_of_its_choice(pg, admin, aws):
    # Red team: the server's secret is read as its owner only for what the server itself
    # does with it.  A mapping repeating the server's key id and secret name beside a
    # role_arn (which the guard lets it set "beside its own keys") would otherwise make the
    # server's key assume any role that key may assume.
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    session = f"t-{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name))
    table = make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, sts_endpoint_url=aws.url
    )
    admin.execute(f"CREATE ROLE {role} LOGIN")
    dsn = pg.dsn.replace("user=postgres", f"user={role}")
    assert usernames(dsn, table) == USERS
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER {table} OPTIONS ("
            f"aws_access_key_id {_lit(key_id)}, api_key_name {_lit(name)}, "
            "role_arn 'arn:aws:iam::123456789012:role/other', "
            f"role_session_name {_lit(session)})"
        )
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table}")
    assert aws.assumed_roles(session) == 0


def test_a_cached_server_secret_is_not_reused_for_a_mapping_that_changes_its_use(pg, admin, aws):
    # The same, in one session whose backend has just read the secret as the server's owner:
    # the cached secret must not stand in for the owner check.
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    session = f"t-{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name))
    table = make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, sts_endpoint_url=aws.url
    )
    admin.execute(f"CREATE ROLE {role} LOGIN")
    dsn = pg.dsn.replace("user=postgres", f"user={role}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert [r[0] for r in conn.execute(f"SELECT username FROM {table} ORDER BY 1")] == USERS
        conn.execute(
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER {table} OPTIONS ("
            f"aws_access_key_id {_lit(key_id)}, api_key_name {_lit(name)}, "
            "role_arn 'arn:aws:iam::123456789012:role/other', "
            f"role_session_name {_lit(session)})"
        )
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table}")
        # A mapping that repeats the server's options exactly still signs as the server.
        conn.execute(
            f"ALTER USER MAPPING FOR CURRENT_USER SERVER {table} OPTIONS ("
            "DROP role_arn, DROP role_session_name)"
        )
        assert [r[0] for r in conn.execute(f"SELECT username FROM {table} ORDER BY 1")] == USERS
    assert aws.assumed_roles(session) == 0


def test_a_server_matching_on_some_options_lends_no_owner_rights(pg, admin, aws):
    # Server B names the secret too but also assumes a role with it; A (which the role
    # queries, with B's key id and secret name in its mapping) does not.  B's owner's
    # rights are for B's use of the secret only.
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name))
    make_server(
        admin, aws, aws_access_key_id=key_id, api_key_name=name, sts_endpoint_url=aws.url,
        role_arn="arn:aws:iam::123456789012:role/reader",
    )  # fmt: skip
    table_a = make_server(admin, aws)
    admin.execute(f"CREATE ROLE {role} LOGIN")
    dsn = pg.dsn.replace("user=postgres", f"user={role}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER {table_a} OPTIONS ("
            f"aws_access_key_id {_lit(key_id)}, api_key_name {_lit(name)})"
        )
        with pytest.raises(psycopg.Error, match="may not read the secret"):
            conn.execute(f"SELECT * FROM {table_a}")
