"""``cognito-fdw seed`` against a real moto server over HTTP.

The expected state is computed from ``demo_user`` itself, so these tests check that the pool
ends up exactly as specified (every user, status, flag, attribute and membership), and that a
rerun changes nothing.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from cognito_fdw.tools.demousers import DEMO_GROUPS, bulk_users, demo_users
from cognito_fdw.tools.devstack import MotoServer
from cognito_fdw.tools.seed import (
    SeedError,
    create_users,
    ensure_pool,
    seed_moto_random,
    seed_pool,
)

pytestmark = pytest.mark.emulator_only

if importlib.util.find_spec("moto") is None:
    pytest.skip("moto is not installed: pip install 'moto[server]'", allow_module_level=True)

REPO = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@pytest.fixture
def pool_name():
    return f"seed-{uuid.uuid4().hex[:8]}"


def _users(cognito, pool_id):
    paginator = cognito.get_paginator("list_users")
    pages = paginator.paginate(UserPoolId=pool_id, PaginationConfig={"PageSize": 60})
    return {
        user["Username"]: user
        for user in itertools.chain.from_iterable(page["Users"] for page in pages)
    }


def _members(cognito, pool_id, group):
    paginator = cognito.get_paginator("list_users_in_group")
    pages = paginator.paginate(
        UserPoolId=pool_id, GroupName=group, PaginationConfig={"PageSize": 60}
    )
    return {user["Username"] for page in pages for user in page["Users"]}


def _attributes(user):
    return {a["Name"]: a["Value"] for a in user["Attributes"] if a["Name"] != "sub"}


def test_seed_creates_exactly_the_demo_pool(cognito, pool_name):
    pool_id = ensure_pool(cognito, pool_name)
    summary = seed_pool(cognito, pool_id, users=200, groups=True)

    wanted = {user.username: user for user in demo_users(200)}
    users = _users(cognito, pool_id)
    assert sorted(users) == sorted(wanted)
    for name, user in users.items():
        assert user["UserStatus"] == wanted[name].status, name
        assert user["Enabled"] == wanted[name].enabled, name
        assert _attributes(user) == wanted[name].attributes, name

    groups = cognito.list_groups(UserPoolId=pool_id, Limit=60)["Groups"]
    assert {(g["GroupName"], g["Description"], g["Precedence"]) for g in groups} == set(DEMO_GROUPS)
    for group, _, _ in DEMO_GROUPS:
        expected = {u.username for u in wanted.values() if group in u.groups}
        assert _members(cognito, pool_id, group) == expected, group

    assert (summary.users_created, summary.users_existing) == (200, 0)
    assert summary.groups_created == len(DEMO_GROUPS)
    assert summary.memberships_added == sum(len(u.groups) for u in wanted.values())
    assert summary.skipped_attributes == []


def test_create_users_makes_exactly_the_users_given_however_many_threads(cognito, pool_name):
    # What the tests' and the benchmark's pools are made with: demo users of every status
    # and bulk users, eight at a time.
    pool_id = ensure_pool(cognito, pool_name)
    wanted = [*demo_users(40), *bulk_users(30, start=5)]
    assert create_users(cognito, pool_id, wanted, threads=8) == len(wanted)
    users = _users(cognito, pool_id)
    assert sorted(users) == sorted(user.username for user in wanted)
    for user in wanted:
        got = users[user.username]
        assert got["UserStatus"] == user.status, user.username
        assert got["Enabled"] == user.enabled, user.username
        assert _attributes(got) == user.attributes, user.username


def test_rerun_changes_nothing(cognito, pool_name):
    pool_id = ensure_pool(cognito, pool_name)
    seed_pool(cognito, pool_id, users=130, groups=True)
    before = _users(cognito, pool_id)

    again = seed_pool(cognito, ensure_pool(cognito, pool_name), users=130, groups=True)

    after = _users(cognito, pool_id)
    # Same subs: nobody was deleted and recreated.
    assert {n: u["Attributes"] for n, u in after.items()} == {
        n: u["Attributes"] for n, u in before.items()
    }
    assert (again.users_created, again.users_existing, again.users_repaired) == (0, 130, 0)
    assert (again.groups_created, again.memberships_added) == (0, 0)
    assert len(cognito.list_groups(UserPoolId=pool_id, Limit=60)["Groups"]) == len(DEMO_GROUPS)


def test_growing_the_pool_adds_only_the_new_users(cognito, pool_name):
    pool_id = ensure_pool(cognito, pool_name)
    seed_pool(cognito, pool_id, users=20)
    summary = seed_pool(cognito, pool_id, users=70)
    assert (summary.users_created, summary.users_existing) == (50, 20)
    assert len(_users(cognito, pool_id)) == 70


def test_rerun_repairs_what_an_interrupted_run_left(cognito, pool_name):
    pool_id = ensure_pool(cognito, pool_name)
    wanted = list(demo_users(60))
    seed_pool(cognito, pool_id, users=60, groups=True)
    disabled = next(u for u in wanted if not u.enabled and "custom:plan" in u.attributes)
    member = next(u for u in wanted if "viewers" in u.groups)
    cognito.admin_enable_user(UserPoolId=pool_id, Username=disabled.username)
    cognito.admin_update_user_attributes(
        UserPoolId=pool_id,
        Username=disabled.username,
        UserAttributes=[{"Name": "custom:plan", "Value": "hacked"}],
    )
    cognito.admin_remove_user_from_group(
        UserPoolId=pool_id, Username=member.username, GroupName="viewers"
    )

    summary = seed_pool(cognito, pool_id, users=60, groups=True)

    assert summary.users_repaired == 1
    assert summary.memberships_added == 1
    user = cognito.admin_get_user(UserPoolId=pool_id, Username=disabled.username)
    assert user["Enabled"] is False
    assert _attributes({"Attributes": user["UserAttributes"]}) == disabled.attributes
    assert member.username in _members(cognito, pool_id, "viewers")


def test_pool_without_the_custom_attributes_is_seeded_without_them(cognito, pool_name):
    pool_id = cognito.create_user_pool(PoolName=pool_name)["UserPool"]["Id"]
    summary = seed_pool(cognito, pool_id, users=30)
    assert summary.users_created == 30
    assert summary.skipped_attributes == [
        "custom:age",
        "custom:beta",
        "custom:plan",
        "custom:tenant",
    ]
    for user in _users(cognito, pool_id).values():
        assert not any(name.startswith("custom:") for name in _attributes(user))


def test_pool_with_email_usernames_is_refused(cognito, pool_name):
    pool_id = cognito.create_user_pool(PoolName=pool_name, UsernameAttributes=["email"])[
        "UserPool"
    ]["Id"]
    with pytest.raises(SeedError, match="uses email as the username"):
        seed_pool(cognito, pool_id, users=1)


def test_two_pools_with_the_name_are_refused(cognito, pool_name):
    for _ in range(2):
        cognito.create_user_pool(PoolName=pool_name)
    with pytest.raises(SeedError, match="2 user pools are named"):
        ensure_pool(cognito, pool_name)


def _cli(endpoint, *args):
    env = {**os.environ, **CREDENTIALS, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cognito_fdw.tools.cli",
            "seed",
            "--endpoint-url",
            endpoint,
            "--region",
            REGION,
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_prints_and_writes_the_pool_id_and_reruns_cleanly(moto, cognito, pool_name, tmp_path):
    id_file = tmp_path / "pool_id"
    args = ("--pool-name", pool_name, "--users", "25", "--groups", "--pool-id-file", str(id_file))

    first = _cli(moto.url, *args)
    second = _cli(moto.url, *args)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    pool_id = first.stdout.strip()
    assert second.stdout.strip() == pool_id
    assert id_file.read_text() == pool_id + "\n"
    assert "25 users created" in first.stderr
    assert "0 users created, 25 already there" in second.stderr
    pools = cognito.list_user_pools(MaxResults=60)["UserPools"]
    assert [p["Id"] for p in pools if p["Name"] == pool_name] == [pool_id]


def test_cli_reports_an_unknown_pool_in_one_line(moto):
    result = _cli(moto.url, "--pool-id", "us-east-1_missing", "--users", "1")
    assert result.returncode == 1
    assert result.stdout == ""
    said, error = result.stderr.splitlines()  # what it set out to do, and what went wrong
    assert said == "cognito-fdw seed: pool us-east-1_missing: 1 demo users"
    assert error.startswith("cognito-fdw seed: error: ResourceNotFoundException")


# -- the same subs on every fresh emulator ----------------------------------------------------


def _seeded_fresh_emulator(users: int) -> dict[str, tuple[str, object]]:
    """username -> (sub, creation date) of a demo pool seeded into a moto of its own."""
    moto = MotoServer().start()
    try:
        client = boto3.client(
            "cognito-idp", region_name=REGION, endpoint_url=moto.url,
            aws_access_key_id="test", aws_secret_access_key="test",
        )  # fmt: skip
        pool_id = ensure_pool(client, "demo", moto_random_seed=1)
        seed_pool(client, pool_id, users=users, groups=True)
        return {
            name: ({a["Name"]: a["Value"] for a in user["Attributes"]}["sub"],
                   user["UserCreateDate"])
            for name, user in _users(client, pool_id).items()
        }  # fmt: skip
    finally:
        moto.stop()


def test_a_fresh_emulator_gives_the_demo_users_the_same_subs_again():
    # make down + make dev restarts moto, which forgets the pool; app tables keyed on sub
    # (sync.sql's app.users, an orders.user_sub) must still match the users seeded again.
    first = _seeded_fresh_emulator(40)
    time.sleep(1.1)  # creation times are whole seconds in Cognito's answers
    second = _seeded_fresh_emulator(40)
    assert len(first) == 40
    assert {name: sub for name, (sub, _) in first.items()} == {
        name: sub for name, (sub, _) in second.items()
    }
    assert len({sub for sub, _ in first.values()}) == 40
    # What stays different, as docs/development.md says: the time of the run.
    assert all(first[name][1] < second[name][1] for name in first)


def test_a_random_seed_for_an_endpoint_that_is_not_moto_is_refused():
    with pytest.raises(SeedError, match="for moto's server only"):
        seed_moto_random("http://127.0.0.1:9", 1)
