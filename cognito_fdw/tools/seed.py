"""Fill a Cognito user pool with deterministic demo users and groups.

This backs ``cognito-fdw seed``, the compose stack's one-shot ``seed`` service, the
integration tests and the benchmarks (:func:`create_users`, for pools of their own
content). It takes a boto3 ``cognito-idp`` client, so it works against moto and against a
real pool alike::

    import boto3
    from cognito_fdw.tools.seed import ensure_pool, seed_pool

    client = boto3.client("cognito-idp", region_name="us-east-1",
                          endpoint_url="http://127.0.0.1:5000")
    pool_id = ensure_pool(client, "demo")
    summary = seed_pool(client, pool_id, users=200, groups=True)

What a run produces: the users of :mod:`cognito_fdw.tools.demousers` (only the custom
attributes the pool's schema has, so a pool created elsewhere can be seeded too), with their
statuses made the way Cognito makes them: ``CONFIRMED`` (AdminCreateUser, then a permanent
random password), ``FORCE_CHANGE_PASSWORD`` (AdminCreateUser alone) and ``UNCONFIRMED``
(SignUp through an app client this module creates); and with ``groups=True``, the demo groups
and their members.

A rerun converges instead of duplicating: existing users and groups are not recreated, and
a user left half-done by an interrupted run (or edited by hand) gets its demo attribute
values, its password, its disabled flag and its group memberships put right.

Cognito gives each user a ``sub`` and a creation time of its own.  Against moto,
``ensure_pool(..., moto_random_seed=N)`` makes the subs repeat on every fresh emulator
(moto draws them from a generator it lets clients seed); the creation times are always the
time of the run.

Requests respect Cognito's real limits (pages of at most 60) even though moto accepts more.
Throttling (``TooManyRequestsException``) is left to the client's botocore retry config.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, TextIO

from cognito_fdw.tools.demousers import (
    CONFIRMED,
    CUSTOM_ATTRIBUTES,
    DEMO_GROUPS,
    FORCE_CHANGE_PASSWORD,
    UNCONFIRMED,
    USERNAME_PREFIX,
    DemoUser,
    demo_users,
    username_for,
)

#: Cognito rejects page sizes above 60 for every list operation used here.
PAGE_SIZE = 60

#: The app client SignUp goes through; found by this name on rerun, never duplicated.
SIGNUP_CLIENT_NAME = "cognito-fdw-seed"

#: ``progress(done, total)`` after each user; ``progress(done, total, "groups")`` after each
#: group's memberships.
Progress = Callable[..., None]


@dataclass
class SeedSummary:
    """What a :func:`seed_pool` run did; ``str()`` gives a one-line report."""

    pool_id: str
    users_created: int = 0
    users_existing: int = 0
    users_repaired: int = 0
    groups_created: int = 0
    memberships_added: int = 0
    skipped_attributes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"pool {self.pool_id}: {self.users_created} users created, "
            f"{self.users_existing} already there ({self.users_repaired} repaired), "
            f"{self.groups_created} groups created, {self.memberships_added} memberships added"
        )
        if self.skipped_attributes:
            text += "; not in the pool's schema, left out: " + ", ".join(self.skipped_attributes)
        return text


class SeedError(Exception):
    """A pool that cannot be seeded, with what to do about it."""


class TextProgress:
    """A plain-text progress bar: redrawn in place on a TTY, a line per 10% otherwise."""

    width = 30

    def __init__(self, stream: TextIO, label: str):
        self.stream = stream
        self.label = label
        self.tty = stream.isatty()
        self.last_decile = -1

    def __call__(self, done: int, total: int, label: str | None = None) -> None:
        if label is not None and label != self.label:
            self.label, self.last_decile = label, -1
        if self.tty:
            filled = self.width * done // total
            bar = "#" * filled + "." * (self.width - filled)
            end = "\n" if done == total else ""
            self.stream.write(f"\r[{bar}] {done}/{total} {self.label}{end}")
            self.stream.flush()
        elif 10 * done // total != self.last_decile:
            self.last_decile = 10 * done // total
            self.stream.write(f"{done}/{total} {self.label}\n")
            self.stream.flush()


def find_pool(client, name: str) -> str | None:
    """The id of the pool named ``name``, None if there is none; refuses an ambiguous name."""
    paginator = client.get_paginator("list_user_pools")
    found = [
        pool["Id"]
        for page in paginator.paginate(PaginationConfig={"PageSize": PAGE_SIZE})
        for pool in page["UserPools"]
        if pool["Name"] == name
    ]
    if len(found) > 1:
        raise SeedError(
            f"{len(found)} user pools are named {name!r} ({', '.join(found)}); "
            "pass the one to seed with --pool-id"
        )
    return found[0] if found else None


def ensure_pool(client, name: str, moto_random_seed: int | None = None) -> str:
    """The id of the pool named ``name``, created with the demo schema if it doesn't exist.

    ``moto_random_seed``: against moto's server only, seed its random generator (``POST
    /moto-api/seed``) just before creating the pool, so that the users seeded next get the same
    subs on every fresh emulator.  A pool that exists is left alone: reseeding then would make
    moto hand out its users' subs again.  :class:`SeedError` when the endpoint is not moto.
    """
    pool_id = find_pool(client, name)
    if pool_id is None:
        if moto_random_seed is not None:
            seed_moto_random(client.meta.endpoint_url, moto_random_seed)
        response = client.create_user_pool(
            PoolName=name,
            Schema=list(CUSTOM_ATTRIBUTES),
            UsernameConfiguration={"CaseSensitive": True},
        )
        pool_id = response["UserPool"]["Id"]
    return pool_id


def seed_moto_random(endpoint_url: str, seed: int) -> None:
    """Seed the random generator of the moto server at ``endpoint_url``; :class:`SeedError`
    when nothing there answers moto's ``POST /moto-api/seed``."""
    url = f"{endpoint_url.rstrip('/')}/moto-api/seed?a={seed}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30).close()
    except (urllib.error.URLError, OSError) as error:
        raise SeedError(
            f"POST {url} failed ({error}): a random seed is for moto's server only; "
            "leave --moto-random-seed out for any other endpoint"
        ) from error


def seed_pool(
    client,
    pool_id: str,
    users: int = 200,
    groups: bool = False,
    progress: Progress | None = None,
) -> SeedSummary:
    """Bring ``pool_id`` to the demo state for ``users`` users (and groups); see the module doc.

    ``progress`` (see :data:`Progress`) is told after each user and after each group.
    """
    if users < 0:
        raise ValueError(f"users must be 0 or more, got {users}")
    summary = SeedSummary(pool_id)
    custom_attributes = _check_pool(client, pool_id)
    existing = _existing_users(client, pool_id)
    signup_client_id = None
    wanted = list(demo_users(users))
    skipped = set()
    for done, user in enumerate(wanted, start=1):
        # Standard attributes exist in every pool; custom ones only where the schema has them.
        attributes = {
            k: v
            for k, v in user.attributes.items()
            if not k.startswith("custom:") or k in custom_attributes
        }
        skipped.update(set(user.attributes) - set(attributes))
        current = existing.get(user.username)
        if current is None:
            if user.status == UNCONFIRMED and signup_client_id is None:
                signup_client_id = _ensure_signup_client(client, pool_id)
            _create_user(client, pool_id, user, attributes, signup_client_id)
            summary.users_created += 1
        else:
            summary.users_existing += 1
            if _repair_user(client, pool_id, user, attributes, current):
                summary.users_repaired += 1
        if progress is not None:
            progress(done, users)
    summary.skipped_attributes = sorted(skipped)
    if groups:
        summary.groups_created, summary.memberships_added = _seed_groups(
            client, pool_id, wanted, progress
        )
    return summary


def create_users(client, pool_id: str, users: Iterable[DemoUser], threads: int = 1) -> int:
    """Create ``users`` in ``pool_id`` as :func:`seed_pool` creates a missing demo user (its
    status, attributes and disabled flag; not its groups); how many were created.

    For pools whose content a caller decides (the tests', the benchmarks'): none of the users
    may exist yet, and the pool must have every custom attribute they hold.  With ``threads``
    above 1 they are created that many at a time, in no set order (each user is one to three
    requests: threads are what makes ten thousand quick); with 1, in order.
    """
    users = list(users)
    signup_client_id = None
    if any(user.status == UNCONFIRMED for user in users):
        signup_client_id = _ensure_signup_client(client, pool_id)

    def create(user: DemoUser) -> None:
        _create_user(client, pool_id, user, user.attributes, signup_client_id)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, users))
    return len(users)


def _check_pool(client, pool_id: str) -> set[str]:
    """The pool's custom attributes; refuses pools whose usernames must be emails or phones."""
    pool = client.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    if pool.get("UsernameAttributes"):
        raise SeedError(
            f"pool {pool_id} uses {' or '.join(pool['UsernameAttributes'])} as the username, "
            f"so demo usernames like {username_for(1)!r} are refused; seed a pool created "
            "with --pool-name instead"
        )
    return {
        attribute["Name"]
        for attribute in pool.get("SchemaAttributes", [])
        if attribute["Name"].startswith("custom:")
    }


def _existing_users(client, pool_id: str) -> dict[str, dict]:
    """The pool's demo users by username (a prefix filter keeps other users out of the scan)."""
    paginator = client.get_paginator("list_users")
    pages = paginator.paginate(
        UserPoolId=pool_id,
        Filter=f'username ^= "{USERNAME_PREFIX}"',
        PaginationConfig={"PageSize": PAGE_SIZE},
    )
    return {user["Username"]: user for page in pages for user in page["Users"]}


def _ensure_signup_client(client, pool_id: str) -> str:
    paginator = client.get_paginator("list_user_pool_clients")
    for page in paginator.paginate(UserPoolId=pool_id, PaginationConfig={"PageSize": PAGE_SIZE}):
        for app_client in page["UserPoolClients"]:
            if app_client["ClientName"] == SIGNUP_CLIENT_NAME:
                return app_client["ClientId"]
    # No secret: SignUp through a client with a secret needs a SecretHash on every call.
    response = client.create_user_pool_client(
        UserPoolId=pool_id, ClientName=SIGNUP_CLIENT_NAME, GenerateSecret=False
    )
    return response["UserPoolClient"]["ClientId"]


def _password() -> str:
    # Nobody logs in as a demo user, so the password is random and thrown away; the fixed
    # suffix satisfies Cognito's default policy (upper, lower, digit, symbol).
    return secrets.token_urlsafe(12) + "Aa1!"


def _attribute_list(attributes: dict[str, str]) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in attributes.items()]


def _create_user(client, pool_id, user: DemoUser, attributes, signup_client_id) -> None:
    # Each step below is one the rerun can repair, so a crash midway leaves nothing stuck.
    if user.status == UNCONFIRMED:
        # SignUp is the only way to get UNCONFIRMED. The attributes follow through the admin
        # API, which may write what an app client may not (*_verified, custom attributes
        # missing from the client's WriteAttributes).
        client.sign_up(ClientId=signup_client_id, Username=user.username, Password=_password())
        if attributes:
            _update_attributes(client, pool_id, user.username, attributes)
    else:
        # SUPPRESS: a real pool must not send invitation messages for demo users.
        client.admin_create_user(
            UserPoolId=pool_id,
            Username=user.username,
            UserAttributes=_attribute_list(attributes),
            MessageAction="SUPPRESS",
        )
        if user.status == CONFIRMED:
            _confirm(client, pool_id, user.username)
    if not user.enabled:
        client.admin_disable_user(UserPoolId=pool_id, Username=user.username)


def _confirm(client, pool_id: str, username: str) -> None:
    client.admin_set_user_password(
        UserPoolId=pool_id, Username=username, Password=_password(), Permanent=True
    )


def _update_attributes(client, pool_id: str, username: str, attributes: dict[str, str]) -> None:
    client.admin_update_user_attributes(
        UserPoolId=pool_id, Username=username, UserAttributes=_attribute_list(attributes)
    )


def _repair_user(client, pool_id: str, user: DemoUser, attributes, current: dict) -> bool:
    """Bring an existing user back to its demo state; True if anything had to change.

    Covers what an interrupted run leaves undone and what someone changed by hand: demo
    attribute values, the permanent password, the disabled flag. Attributes the demo user
    doesn't have are left alone, and UNCONFIRMED can't be restored once confirmed.
    """
    repaired = False
    have = {a["Name"]: a["Value"] for a in current.get("Attributes", [])}
    differ = {name: value for name, value in attributes.items() if have.get(name) != value}
    if differ:
        _update_attributes(client, pool_id, user.username, differ)
        repaired = True
    if user.status == CONFIRMED and current["UserStatus"] == FORCE_CHANGE_PASSWORD:
        _confirm(client, pool_id, user.username)
        repaired = True
    if not user.enabled and current["Enabled"]:
        client.admin_disable_user(UserPoolId=pool_id, Username=user.username)
        repaired = True
    return repaired


def _seed_groups(
    client, pool_id: str, wanted: list[DemoUser], progress: Progress | None
) -> tuple[int, int]:
    paginator = client.get_paginator("list_groups")
    pages = paginator.paginate(UserPoolId=pool_id, PaginationConfig={"PageSize": PAGE_SIZE})
    existing = {group["GroupName"] for page in pages for group in page["Groups"]}
    created = added = 0
    for done, (name, description, precedence) in enumerate(DEMO_GROUPS, start=1):
        if name not in existing:
            client.create_group(
                UserPoolId=pool_id, GroupName=name, Description=description, Precedence=precedence
            )
            created += 1
        members = _group_members(client, pool_id, name)
        for user in wanted:
            if name in user.groups and user.username not in members:
                client.admin_add_user_to_group(
                    UserPoolId=pool_id, Username=user.username, GroupName=name
                )
                added += 1
        if progress is not None:
            progress(done, len(DEMO_GROUPS), "groups")
    return created, added


def _group_members(client, pool_id: str, group: str) -> set[str]:
    paginator = client.get_paginator("list_users_in_group")
    pages = paginator.paginate(
        UserPoolId=pool_id, GroupName=group, PaginationConfig={"PageSize": PAGE_SIZE}
    )
    return {user["Username"] for page in pages for user in page["Users"]}
