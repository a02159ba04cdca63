"""Where the credential tests run: moto with IAM authentication on, and a PostgreSQL server
with every credential source the wrapper reads.

Once :func:`authenticated_moto` has set moto up, it checks every request's signature, so a
query only succeeds with credentials moto issued: a secret access key must really arrive.
:func:`keyed_postgres` starts a server with AWS_* keys in its environment (the default
chain), a shared credentials file in its HOME (``aws_profile 'fdwprofile'``), and the
README's install (the guard, sql/vault.sql), logging every statement.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from typing import NamedTuple

import boto3
import psycopg

from cognito_fdw.tools.seed import create_users

from .pool import POOL_REGION, new_user
from .postgres import (
    DockerPostgres,
    create_table,
    error_of,
    install_readme_setup,
    options_sql,
    own_server,
)

ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
#: The external id role ``guarded`` demands (a known value for the leak tests).
EXTERNAL_ID = "LeakCanaryExternalId-5b1e"
#: IAM users, each with an access key: one per credential source under test.
IAM_USERS = ("admin", "keys", "env", "profile", "vault", "limited")
#: The users of the pool ``creds``, in order.
USERS = ["cred0", "cred1", "cred2"]
_LIMITED = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "cognito-idp:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "sts:AssumeRole",
     "Resource": ["arn:aws:iam::123456789012:role/reader",
                  "arn:aws:iam::123456789012:role/guarded"]}]})  # fmt: skip


class Aws:
    """The authenticated moto server and what was created in it."""

    def __init__(self, url: str):
        self.url = url
        self.keys: dict[str, tuple[str, str]] = {}  # IAM user -> (key id, secret)
        self.pool_id = ""

    def client(self, service: str, who: str = "admin"):
        """A boto3 client for ``service`` signing with IAM user ``who``'s key."""
        key_id, secret = self.keys[who]
        return boto3.client(
            service, region_name=POOL_REGION, endpoint_url=self.url,
            aws_access_key_id=key_id, aws_secret_access_key=secret,
        )  # fmt: skip

    def assumed_roles(self, session_name: str) -> int:
        """How many times a role was assumed with ``session_name``."""
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json") as response:
            data = json.load(response)
        roles = data.get("sts", {}).get("AssumedRole", [])
        return sum(1 for r in roles if r.get("session_name") == session_name)


def authenticated_moto(url: str) -> Aws:
    """Set up the moto at ``url``: the IAM users of :data:`IAM_USERS` (``limited`` may only
    use Cognito and assume ``reader`` and ``guarded``), roles ``reader``, ``other`` and
    ``guarded`` (the last wants :data:`EXTERNAL_ID`), the pool ``creds`` with
    :data:`USERS`; then turn IAM authentication on."""
    aws = Aws(url)
    iam = boto3.client(
        "iam", region_name=POOL_REGION, endpoint_url=url,
        aws_access_key_id="AKIDSETUP", aws_secret_access_key="setup",
    )  # fmt: skip
    for who in IAM_USERS:
        iam.create_user(UserName=who)
        policy = _LIMITED if who == "limited" else ALLOW_ALL
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
    create_users(cognito, aws.pool_id, (new_user(username) for username in USERS))
    # From here on every request must be signed with keys moto issued.
    request = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request).close()
    return aws


def keyed_postgres(aws: Aws):
    """A started server with every credential source (see the module doc) for ``aws``;
    ``key_file`` is its vault key file."""
    env_key, env_secret = aws.keys["env"]
    pg = own_server({"AWS_ACCESS_KEY_ID": env_key, "AWS_SECRET_ACCESS_KEY": env_secret})
    key_id, secret = aws.keys["profile"]
    profile = f"[fdwprofile]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    if isinstance(pg, DockerPostgres):  # the home of the image's postgres user
        pg.put_file("/var/lib/postgresql/.aws/credentials", profile)
    else:
        aws_dir = pg.base / ".aws"
        aws_dir.mkdir()
        (aws_dir / "credentials").write_text(profile)
        if pg.user is not None:
            for path in (aws_dir, aws_dir / "credentials"):
                os.chown(path, pg.user.pw_uid, pg.user.pw_gid)
        (aws_dir / "credentials").chmod(0o600)
    pg.key_file = pg.base / "vault.keys"
    install_readme_setup(pg, user_pool_id=aws.pool_id, endpoint_url=aws.url)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        # Statements are logged from now on, so the loopback's show up in the log.
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        conn.execute("SELECT pg_reload_conf()")
    return pg


def make_server(conn, aws: Aws, mapping: dict | None = None, **options) -> str:
    """A cognito_fdw server on ``aws``'s pool with ``options``, a PUBLIC user mapping with
    ``mapping`` (if any), and a users table of the same name everyone may read; its name."""
    name = f"c_{uuid.uuid4().hex[:8]}"
    # The shared cache off: each query here must reach the endpoint with its credentials.
    opts = {"wrapper": "cognito_fdw.CognitoFdw", "user_pool_id": aws.pool_id, "cache_ttl": "0"}
    opts.update(options)
    opts.setdefault("endpoint_url", aws.url)
    conn.execute(
        f"CREATE SERVER {name} FOREIGN DATA WRAPPER multicorn OPTIONS ({options_sql(opts)})"
    )
    if mapping:
        conn.execute(
            f"CREATE USER MAPPING FOR PUBLIC SERVER {name} OPTIONS ({options_sql(mapping)})"
        )
    create_table(conn, f"public.{name}", "username text", name, object="users")
    conn.execute(f"GRANT USAGE ON FOREIGN SERVER {name} TO PUBLIC")
    conn.execute(f"GRANT SELECT ON public.{name} TO PUBLIC")
    return name


class VaultSecret(NamedTuple):
    key_id: str  # the access key id that goes with the secret
    secret: str
    name: str
    id: str  # its vault id


def vault_secret(admin, aws: Aws) -> VaultSecret:
    """IAM user vault's secret access key, stored in the vault under a new name."""
    key_id, secret = aws.keys["vault"]
    name = f"s_{uuid.uuid4().hex[:8]}"
    secret_id = admin.execute("SELECT vault.create_secret(%s, %s)", (secret, name)).fetchone()[0]
    return VaultSecret(key_id, secret, name, str(secret_id))


def keys_mapping(aws: Aws, who: str = "keys") -> dict:
    """User mapping options with IAM user ``who``'s access key."""
    key_id, secret = aws.keys[who]
    return {"aws_access_key_id": key_id, "aws_secret_access_key": secret}


def usernames(dsn: str, table: str) -> list[str]:
    """The usernames ``table`` reads, in order, in a new session on ``dsn``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute(f"SELECT username FROM {table} ORDER BY 1")]


def error_in_session(dsn: str, sql: str) -> psycopg.Error:
    """The error ``sql`` raises in a new session on ``dsn`` (:func:`postgres.error_of`)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return error_of(conn, sql)
