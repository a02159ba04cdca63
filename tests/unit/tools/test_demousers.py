"""The demo users: decided by their number alone, and covering what the wrapper must handle."""

from __future__ import annotations

from collections import Counter

from cognito_fdw.tools.demousers import (
    CONFIRMED,
    FORCE_CHANGE_PASSWORD,
    UNCONFIRMED,
    bulk_user,
    bulk_users,
    demo_user,
    demo_users,
    username_for,
)

USERS = list(demo_users(200))


def test_users_are_deterministic_and_independent_of_n():
    assert demo_user(17) == demo_user(17)
    assert list(demo_users(20)) == USERS[:20]
    assert [u.username for u in USERS[:2]] == ["user0001", "user0002"]
    assert username_for(12345) == "user12345"


def test_the_default_200_users_cover_every_case_the_wrapper_must_handle():
    statuses = Counter(u.status for u in USERS)
    assert set(statuses) == {CONFIRMED, FORCE_CHANGE_PASSWORD, UNCONFIRMED}
    assert 0 < sum(not u.enabled for u in USERS) < 50
    assert any(u.attributes == {} for u in USERS)
    assert any("email" not in u.attributes for u in USERS if u.attributes)
    assert {u.attributes.get("email_verified") for u in USERS} >= {"true", "false"}
    names = {u.attributes.get("name", "") for u in USERS}
    for letter in "éüñøł山":
        assert any(letter in name for name in names), letter
    assert any(not name.isascii() for name in names)
    for custom in ("custom:tenant", "custom:plan", "custom:age", "custom:beta"):
        assert any(custom in u.attributes for u in USERS), custom
    assert {g for u in USERS for g in u.groups} == {"admin", "editors", "viewers"}
    assert any(not u.groups for u in USERS)


def test_contact_data_is_reserved_for_examples():
    for user in USERS:
        email = user.attributes.get("email", "x@example.com")
        assert email.lower().endswith(("@example.com", "@example.org"))
        phone = user.attributes.get("phone_number", "+12025550100")
        assert phone[5:9] == "5550" and 100 <= int(phone[8:]) <= 199


def test_every_value_is_a_string_as_cognito_stores_it():
    assert all(isinstance(v, str) for u in USERS for v in u.attributes.values())


def test_bulk_users_are_plain_numbered_and_every_tenth_disabled():
    users = list(bulk_users(20, start=5))
    assert [u.username for u in users[:2]] == ["bench000005", "bench000006"]
    assert users[0] == bulk_user(5)
    assert [u.username for u in users if not u.enabled] == ["bench000010", "bench000020"]
    assert {u.status for u in users} == {FORCE_CHANGE_PASSWORD} and not any(u.groups for u in users)
    assert users[0].attributes == {"email": "bench000005@example.com", "given_name": "Given5"}
