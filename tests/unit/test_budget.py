"""A statement's request budget (cognito_fdw/budget.py)."""

from __future__ import annotations

import pytest

from cognito_fdw.budget import Budget, BudgetExceeded


def test_a_plan_over_the_budget_is_refused_with_its_estimate():
    budget = Budget()
    budget.claim("s1")
    with pytest.raises(BudgetExceeded) as refused:
        budget.check_plan(16_667, 1000, "a scan of the whole user pool (about 1,000,000 users)")
    assert "would send about 16,667 Cognito requests" in refused.value.message
    assert "max_requests_per_statement (1,000)" in refused.value.message
    assert "raise max_requests_per_statement" in refused.value.hint
    budget.check_plan(1000, 1000, "fits")


def test_charges_stop_at_the_limit_and_a_new_statement_starts_afresh():
    budget = Budget()
    budget.claim("s1")
    for _ in range(3):
        budget.charge(3, "ListUsers")
    with pytest.raises(BudgetExceeded, match="reached max_requests_per_statement \\(3"):
        budget.charge(3, "ListUsers")
    with pytest.raises(BudgetExceeded, match="reached max_requests_per_statement"):
        budget.check_plan(1, 3, "1 lookup")  # fits alone: the statement spent the budget
    budget.claim("s1")  # another scan of the same statement: no reset
    with pytest.raises(BudgetExceeded):
        budget.charge(3, "ListUsers")
    budget.claim("s2")
    budget.charge(3, "ListUsers")
    assert budget.used == 1


def test_a_commits_requests_are_not_charged():
    budget = Budget()
    budget.claim("s1")
    budget.charge(1, "ListUsers")
    budget.suspend()
    for _ in range(5):
        budget.charge(1, "AdminAddUserToGroup")
    budget.claim("s1")  # the same statement again after a COMMIT: counted from 0
    budget.charge(1, "ListUsers")
