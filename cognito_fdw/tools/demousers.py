"""The demo users: who they are, decided by their number alone.

Users ``user0001`` .. ``userNNNN``, each built by :func:`demo_user` from its own seeded
random generator, so user 17 is the same whatever N is and on every run:

- varied attributes: ``example.com``/``example.org`` emails (reserved domains, so nobody gets
  mail), fictional ``555-01xx`` phone numbers, names with é, ü, ñ, ø, ł and CJK, some users
  missing email, phone or names, one in fifty with no attributes at all, ``email_verified``
  true and false, and the custom attributes of :data:`CUSTOM_ATTRIBUTES`;
- statuses ``CONFIRMED``, ``FORCE_CHANGE_PASSWORD`` and ``UNCONFIRMED``; some users disabled;
- memberships of the groups of :data:`DEMO_GROUPS`.

And the bulk users ``bench000000``.. of :func:`bulk_users`, plain and numerous, for the
benchmarks' and the load tests' large pools.

:mod:`cognito_fdw.tools.seed` puts them into a pool.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

USERNAME_PREFIX = "user"

#: Custom attributes of a pool created by :func:`ensure_pool` (Cognito adds ``custom:``).
CUSTOM_ATTRIBUTES = (
    {
        "Name": "tenant",
        "AttributeDataType": "String",
        "Mutable": True,
        "StringAttributeConstraints": {"MinLength": "1", "MaxLength": "64"},
    },
    {
        "Name": "plan",
        "AttributeDataType": "String",
        "Mutable": True,
        "StringAttributeConstraints": {"MinLength": "1", "MaxLength": "32"},
    },
    {
        "Name": "age",
        "AttributeDataType": "Number",
        "Mutable": True,
        "NumberAttributeConstraints": {"MinValue": "0", "MaxValue": "150"},
    },
    {"Name": "beta", "AttributeDataType": "Boolean", "Mutable": True},
)

#: (name, description, precedence): lower precedence wins in Cognito's token claims.
DEMO_GROUPS = (
    ("admin", "Administrators: full access", 1),
    ("editors", "Can edit content", 10),
    ("viewers", "Read-only access", 20),
)

# (given_name, family_name, name): CJK names are written family name first, without a space.
_PEOPLE = (
    ("Ana", "García", "Ana García"),
    ("José", "Núñez", "José Núñez"),
    ("Zoë", "Müller", "Zoë Müller"),
    ("Jürgen", "Schröder", "Jürgen Schröder"),
    ("Søren", "Kierkegård", "Søren Kierkegård"),
    ("Łucja", "Wałęsa", "Łucja Wałęsa"),
    ("Chloé", "Dubois", "Chloé Dubois"),
    ("Iñigo", "Peña", "Iñigo Peña"),
    ("Ömer", "Öztürk", "Ömer Öztürk"),
    ("Olivia", "O'Brien", "Olivia O'Brien"),
    ("Liam", "Smith", "Liam Smith"),
    ("Priya", "Raman", "Priya Raman"),
    ("太郎", "山田", "山田太郎"),
    ("娜", "李", "李娜"),
    ("민준", "김", "김민준"),
    ("美咲", "佐藤", "佐藤美咲"),
)
_TENANTS = ("acme", "globex", "initech", "umbrella")
_PLANS = ("free", "pro", "enterprise")
_LOCALES = ("en-US", "fr-FR", "de-DE", "es-ES", "ja-JP", "pl-PL")
_AREA_CODES = ("202", "312", "415", "617", "212")

CONFIRMED = "CONFIRMED"
FORCE_CHANGE_PASSWORD = "FORCE_CHANGE_PASSWORD"
UNCONFIRMED = "UNCONFIRMED"


@dataclass(frozen=True)
class DemoUser:
    """The desired state of one demo user."""

    username: str
    attributes: dict[str, str]
    status: str
    enabled: bool
    groups: tuple[str, ...]


def username_for(index: int) -> str:
    """``user0001`` for 1; wider when N needs it (``user10000``)."""
    return f"{USERNAME_PREFIX}{index:04d}"


def demo_user(index: int) -> DemoUser:
    """Build demo user ``index`` (1-based); the same index always gives the same user."""
    # A string seed is hashed with SHA-512, so this is stable across runs and Python versions.
    rng = random.Random(f"cognito-fdw-seed:{index}")
    username = username_for(index)
    attributes: dict[str, str] = {}
    # One user in fifty has no attributes at all: the wrapper must give NULLs, not fail.
    if index % 50 != 0:
        attributes.update(_contact_attributes(rng, username))
        attributes.update(_name_attributes(rng))
        attributes.update(_custom_attributes(rng))
    roll = rng.random()
    status = UNCONFIRMED if roll < 0.10 else FORCE_CHANGE_PASSWORD if roll < 0.25 else CONFIRMED
    enabled = rng.random() >= 0.08
    groups = tuple(
        name
        for name, chance in (("admin", 0.04), ("editors", 0.2), ("viewers", 0.5))
        if rng.random() < chance
    )
    return DemoUser(username, attributes, status, enabled, groups)


def _contact_attributes(rng: random.Random, username: str) -> dict[str, str]:
    attributes = {}
    if rng.random() < 0.9:
        domain = rng.choice(("example.com", "example.org"))
        # A few mixed-case addresses, to exercise case handling in filters.
        local = username.capitalize() if rng.random() < 0.05 else username
        attributes["email"] = f"{local}@{domain}"
        attributes["email_verified"] = "true" if rng.random() < 0.7 else "false"
    if rng.random() < 0.6:
        # 555-0100..0199 is reserved for fiction in the North American numbering plan.
        number = f"+1{rng.choice(_AREA_CODES)}555{rng.randint(100, 199):04d}"
        attributes["phone_number"] = number
        attributes["phone_number_verified"] = "true" if rng.random() < 0.5 else "false"
    return attributes


def _name_attributes(rng: random.Random) -> dict[str, str]:
    if rng.random() < 0.15:
        return {}
    given, family, name = rng.choice(_PEOPLE)
    attributes = {"given_name": given, "family_name": family, "name": name}
    if rng.random() < 0.7:
        attributes["locale"] = rng.choice(_LOCALES)
    return attributes


def _custom_attributes(rng: random.Random) -> dict[str, str]:
    attributes = {"custom:tenant": rng.choice(_TENANTS), "custom:plan": rng.choice(_PLANS)}
    if rng.random() < 0.8:
        attributes["custom:age"] = str(rng.randint(18, 90))
    if rng.random() < 0.5:
        attributes["custom:beta"] = "true" if rng.random() < 0.3 else "false"
    return attributes


def demo_users(count: int) -> Iterator[DemoUser]:
    """Demo users 1..count."""
    return (demo_user(index) for index in range(1, count + 1))


def bulk_user(index: int) -> DemoUser:
    """Bulk user ``index`` (0-based), ``bench000000``..: an email and a given name, every
    tenth disabled, in ``FORCE_CHANGE_PASSWORD`` (created, never signed in)."""
    username = f"bench{index:06d}"
    attributes = {"email": f"{username}@example.com", "given_name": f"Given{index % 97}"}
    return DemoUser(username, attributes, FORCE_CHANGE_PASSWORD, index % 10 != 0, ())


def bulk_users(count: int, start: int = 0) -> Iterator[DemoUser]:
    """Bulk users ``start`` .. ``start + count - 1``."""
    return (bulk_user(index) for index in range(start, start + count))
