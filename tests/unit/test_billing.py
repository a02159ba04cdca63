"""Which Cognito operations the wrapper calls, and which of them botocore's service model
says are billed (docs/pushdown.md, "Billing").

Read in botocore's cognito-idp model: of the operations the wrapper calls, only
AdminGetUser's documentation says it "contributes to your monthly active user (MAU) count
for the purpose of billing"; ListUsers, ListUsersInGroup, AdminListGroupsForUser,
ListGroups, GetGroup, DescribeUserPool, AdminAddUserToGroup and AdminRemoveUserFromGroup say
nothing of billing.  So AdminGetUser is sent only under ``username_lookup 'admin_get_user'``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import botocore.session

from cognito_fdw import plans, pushdown

PACKAGE = Path(pushdown.__file__).parent
# A note in an operation's documentation that it costs money.
BILLING_NOTE = re.compile(r"monthly active user|\bMAU\b|billing|billed|pricing", re.IGNORECASE)


def service_model():
    return botocore.session.get_session().get_service_model("cognito-idp")


def operations_the_wrapper_names() -> set[str]:
    """Every string in the wrapper's modules (not the developer tools) that is the name of
    a cognito-idp operation."""
    names = set(service_model().operation_names)
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if "tools" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.add(node.value)
    return found


def test_the_scan_of_the_source_finds_the_operations_it_must():
    # If this fails, the wrapper calls operations differently and the scan must follow.
    assert operations_the_wrapper_names() >= {
        "ListUsers",
        "AdminGetUser",
        "ListGroups",
        "GetGroup",
        "ListUsersInGroup",
        "AdminListGroupsForUser",
        "AdminAddUserToGroup",
        "AdminRemoveUserFromGroup",
        "DescribeUserPool",
    }


def test_only_admin_get_user_is_billed_among_the_operations_the_wrapper_calls():
    model = service_model()
    billed = {
        name
        for name in operations_the_wrapper_names()
        if BILLING_NOTE.search(model.operation_model(name).documentation or "")
    }
    assert billed == {plans.ADMIN_GET_USER}
    note = model.operation_model("AdminGetUser").documentation
    assert "contributes to your monthly active user (MAU) count" in note
