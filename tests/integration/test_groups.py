"""Tier 2: object 'groups' on a real server: the pool's groups, each read by GetGroup.

On the groups pool (fixture ``gt``, schema gt), which the group_members tests also use.
"""

from __future__ import annotations

import pytest

from ..support.accounting import counting, requests_of

pytestmark = pytest.mark.server


def rows(db, sql):
    return db.execute(sql).fetchall()


def test_groups_table(db, groups_pool_id):
    with counting(db):
        got = rows(db, "SELECT group_name, description, precedence FROM gt.groups ORDER BY 1")
        assert requests_of(db) == [1]
    assert got == [
        ("admins", "the admins", 1),
        ("big", "the big", 20),
        ("empty", "the empty", 9),
        ("staff", "the staff", 5),
    ]
    with counting(db):
        assert rows(db, "SELECT precedence FROM gt.groups WHERE group_name = 'staff'") == [(5,)]
        assert rows(db, "SELECT 1 FROM gt.groups WHERE group_name = 'nope'") == []
        assert requests_of(db) == [1, 1]  # GetGroup each
    created = rows(db, "SELECT created_at <= now() FROM gt.groups WHERE group_name = 'big'")
    assert created == [(True,)]
