"""What every part of the benchmark (:mod:`bench.run`, :mod:`bench.sync`) reaches its
servers with: a connection to the throwaway PostgreSQL, the emulator's client and its
seeded pools, the test keys.
"""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import botocore.config
import psycopg

from cognito_fdw.tools.demousers import bulk_users
from cognito_fdw.tools.seed import create_users

REGION = "us-east-1"
KEYS = "aws_access_key_id 'AKIDBENCH', aws_secret_access_key 'bench-secret'"
ROOT = Path(__file__).resolve().parent.parent


def connect(dsn, attempts=100):
    """A connection, once the freshly started server accepts them."""
    for attempt in range(attempts):
        try:
            return psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


def cognito_client(url):
    return boto3.client(
        "cognito-idp", region_name=REGION, endpoint_url=url,
        aws_access_key_id="AKIDBENCH", aws_secret_access_key="bench-secret",
        config=botocore.config.Config(max_pool_connections=32),
    )  # fmt: skip


def ensure_pool(cognito, size: int) -> str:
    """The pool ``bench-<size>``, seeded once; an emulator that has it is reused."""
    name = f"bench-{size}"
    for pool in cognito.list_user_pools(MaxResults=60)["UserPools"]:
        if pool["Name"] == name:
            described = cognito.describe_user_pool(UserPoolId=pool["Id"])["UserPool"]
            if described.get("EstimatedNumberOfUsers") == size:
                return pool["Id"]
    pool_id = cognito.create_user_pool(PoolName=name)["UserPool"]["Id"]
    started = time.monotonic()
    create_users(cognito, pool_id, bulk_users(size), threads=16)
    print(f"seeded {name} in {time.monotonic() - started:.0f} s")
    return pool_id


# The query sections measure what a query sends: each of their repeated runs must reach
# Cognito (the hot section measures the cache).  The budget per statement is lifted for
# the full scans of 10,000 users and more.
NO_CACHE = "cache_ttl '0', max_requests_per_statement '100000'"
