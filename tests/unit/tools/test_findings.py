"""The pure part of ``cognito-fdw doctor``: facts from answers, fixes from errors, the report."""

from __future__ import annotations

import pytest

from cognito_fdw.tools.findings import (
    FAIL,
    OK,
    WARN,
    Exposure,
    Report,
    exposure_findings,
    guard_findings,
    import_failure,
    managed_findings,
    managed_service,
    parse_accounting,
    probe_failure,
    python_findings,
    runtime_versions,
    server_summary,
)


def test_accounting_is_read_from_the_wrappers_debug_line():
    notices = ["some other notice", "cognito_fdw: 2 requests, 1 rows, 37 ms"]
    assert parse_accounting(notices) == (2, 1, 37.0)
    assert parse_accounting(["unrelated"]) is None


def test_missing_wrapper_module_names_the_fix():
    what, fix = import_failure(
        "Error in python: ModuleNotFoundError", "No module named 'cognito_fdw'"
    )
    assert "cannot import cognito_fdw" in what
    assert "PYTHONPATH" in fix and "restart PostgreSQL" in fix


def test_missing_boto3_is_told_apart_from_a_missing_wrapper():
    what, fix = import_failure(
        "Error in python: ModuleNotFoundError", "No module named 'botocore.config'"
    )
    assert "cannot import botocore" in what
    assert "install boto3" in fix


def test_a_wrapper_error_is_not_an_import_failure():
    assert import_failure("Cognito ListUsers failed: ...", None) is None


def test_a_statement_timeout_points_at_the_network():
    what, fix = probe_failure(
        "57014", "canceling statement due to statement timeout", None, None, 5
    )
    assert what == "no answer within 5 s"
    assert "endpoint" in fix


def test_a_wrapper_error_keeps_its_hint_as_the_fix():
    what, fix = probe_failure(
        "XX000", "Cognito DescribeUserPool failed: not found", "Check user_pool_id.", "code X", 10
    )
    assert what == "Cognito DescribeUserPool failed: not found (code X)"
    assert fix == "Check user_pool_id."


def test_server_summary_never_shows_a_secret_and_warns_where_it_sits():
    options = {
        "wrapper": "cognito_fdw.CognitoFdw",
        "user_pool_id": "us-east-1_Abc",
        "region": "us-east-1",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "s3cr3t-value",
    }
    text, warnings = server_summary("prod", options, {})
    assert "us-east-1_Abc" in text
    assert "no user mapping; credentials: access keys in the options" in text
    assert "s3cr3t-value" not in text + repr(warnings)
    assert [w.status for w in warnings] == [WARN]
    assert "aws_secret_access_key" in warnings[0].text
    assert "USER MAPPING" in warnings[0].fix


def test_server_summary_without_keys_in_options_warns_nothing():
    keys = {"aws_access_key_id": "AKIDX", "aws_secret_access_key": "k"}
    text, warnings = server_summary(
        "s", {"user_pool_id": "us-east-1_Abc"}, {"PUBLIC": keys, "app": None}
    )
    assert "user mapping for PUBLIC: access keys in the options" in text
    assert "user mapping for app: (its options are visible only to" in text
    assert "AKIDX" not in text
    assert warnings == []


def test_server_summary_names_the_source_really_used():
    vault = {"user_pool_id": "us-east-1_Abc", "aws_access_key_id": "AKIDX", "api_key_name": "c"}
    text, _ = server_summary("v", vault, {})
    assert "credentials: a secret in vault.decrypted_secrets (by name)" in text
    text, _ = server_summary("c", {"user_pool_id": "us-east-1_Abc"}, {})
    assert "credentials: the default AWS credential chain of the server's OS user" in text
    text, _ = server_summary("bad", {"user_pool_id": "us-east-1_Abc", "regoin": "x"}, {})
    assert "credentials: none usable: unknown option: regoin" in text


def test_server_summary_says_what_roles_without_a_mapping_use():
    # Multicorn merges the querying role's mapping (else PUBLIC's) over the server's options.
    server = {"user_pool_id": "us-east-1_Abc", "aws_access_key_id": "AKIDX", "api_key_id": "7"}
    keys = {"aws_access_key_id": "AKIDY", "aws_secret_access_key": "k"}
    text, _ = server_summary("s", server, {"app": keys})
    assert "roles without a user mapping: a secret in vault.decrypted_secrets (by id)" in text
    assert "user mapping for app: access keys in the options" in text
    text, _ = server_summary("s", server, {"public": keys, "app": keys})
    assert "roles without a user mapping" not in text  # PUBLIC's mapping serves them


def test_report_fails_only_on_a_failure_and_prints_each_fix():
    report = Report()
    report.add(OK, "multicorn", "extension 3.2")
    report.add(WARN, "server s", "keys in options", "move them")
    assert not report.failed
    report.add(FAIL, "table t", "broken", "mend it")
    report.latencies.extend([10.0, 30.0, 20.0])
    text = report.render()
    assert report.failed
    assert "FAIL  table t: broken\n      fix: mend it" in text
    assert "warn  server s: keys in options\n      fix: move them" in text
    assert "median 20 ms, max 30 ms" in text
    assert text.endswith("1 problem(s) found")


def test_report_shows_each_finding_as_it_is_found():
    shown = []
    report = Report(echo=shown.append)
    report.add(OK, "multicorn", "extension 3.2")
    assert shown == ["ok    multicorn: extension 3.2"]
    report.extend(guard_findings(None))
    assert shown[1].startswith("FAIL  guard: the cognito_fdw guard is not installed")
    assert "\n      fix: install it" in shown[1]
    assert "\n".join([*shown, report.summary()]) == report.render()


def test_guard_findings():
    assert guard_findings(None)[0].status == FAIL
    assert "not installed" in guard_findings(None)[0].text
    assert "disabled" in guard_findings(("D", None))[0].text
    assert "older guard" in guard_findings(("O", ["ALTER SERVER"]))[0].text
    assert guard_findings(("O", None))[0].status == OK


def test_the_runtime_line_of_explain_verbose():
    lines = ["Foreign Scan on public.u", "  Multicorn: Runtime: cognito_fdw 0.1.0, Python "
             "3.11.2, botocore 1.44.8"]  # fmt: skip
    assert runtime_versions(lines) == {
        "cognito_fdw": "0.1.0", "Python": "3.11.2", "botocore": "1.44.8"
    }  # fmt: skip
    assert runtime_versions(["Foreign Scan on public.u"]) == {}


@pytest.mark.parametrize(
    ("roles", "settings", "service"),
    [({"rds_superuser"}, set(), "Amazon RDS for PostgreSQL"),
     ({"rds_superuser"}, {"apg_plan_mgmt.capture_plan_baselines"}, "Amazon Aurora PostgreSQL"),
     (set(), {"cloudsql.iam_authentication"}, "Google Cloud SQL"),
     ({"azure_pg_admin"}, {"azure.extensions"}, "Azure Database for PostgreSQL"),
     ({"supabase_admin"}, set(), "Supabase"),
     (set(), {"neon.timeline_id"}, "Neon"),
     ({"postgres", "app"}, {"shared_buffers"}, None)],
)  # fmt: skip
def test_a_managed_service_by_its_roles_and_settings(roles, settings, service):
    found = managed_service(roles, settings)
    assert (found[0] if found else None) == service
    findings = managed_findings(found, multicorn=False)
    if service:
        assert findings[0].status == FAIL and "docs/managed-postgresql.md" in findings[0].fix
    else:
        assert findings == []


@pytest.mark.parametrize(
    ("python", "plpython", "expected"),
    [("3.11.2", {}, []),
     ("3.11.2", {"installed": True, "functions": 0}, [("note", "pl/python")]),
     ("3.12.3", {"installed": True, "functions": 2}, [("FAIL", "pl/python")]),
     ("3.12.3", {"preloaded": True}, [("FAIL", "pl/python")]),
     ("3.13.1", {}, []),
     ("3.14.0", {}, [("FAIL", "python")]),
     ("3.14.0", {"installed": True}, [("FAIL", "python"), ("FAIL", "pl/python")]),
     (None, {"installed": True}, [("note", "pl/python")])],
)  # fmt: skip
def test_what_the_embedded_python_means(python, plpython, expected):
    findings = python_findings(python, plpython)
    assert [(f.status, f.subject) for f in findings] == expected
    for finding in findings:
        assert finding.fix
    if ("FAIL", "python") in expected:
        assert "pgsql-io/multicorn2#94" in findings[0].text


def test_exposure_findings_name_each_setting_and_its_fix():
    quiet = Exposure(3, [], [], [], 0, [])
    assert exposure_findings(quiet) == []
    assert exposure_findings(Exposure(0, ["session_preload_libraries"], [], [], 5, [])) == []
    found = exposure_findings(Exposure(
        2, ["session_preload_libraries", "role app setting"], [("cognito.users", "app")],
        ["cognito.group_members"], 10, ["cognito.groups"],
    ))  # fmt: skip
    by_subject = {f.subject: f for f in found}
    assert by_subject["auto_explain"].status == FAIL
    assert "role app setting" in by_subject["auto_explain"].text
    assert "log_min_duration = -1" in by_subject["auto_explain"].fix
    assert "cognito.users to app" in by_subject["INSERT"].text
    assert "REVOKE INSERT" in by_subject["INSERT"].fix
    assert "is 10 with writable table(s) cognito.group_members" in (
        by_subject["max_prepared_transactions"].text
    )
    assert (
        by_subject["COPY FROM"].status == FAIL and "cognito.groups" in by_subject["COPY FROM"].text
    )
    inert = exposure_findings(Exposure(2, ["shared_preload_libraries"], [], [], 0, [], False))
    assert [(f.status, f.subject) for f in inert] == [("note", "auto_explain")]
    assert "max_prepared_transactions" not in {
        f.subject for f in exposure_findings(Exposure(2, [], [], [], 10, []))
    }


def test_from_postgresql_16_every_role_that_may_copy_into_a_table_is_named():
    grants, owners = [("cognito.users", "app")], [("mallory", "USAGE on server cognito")]
    on_15 = {f.subject: f for f in exposure_findings(Exposure(2, [], grants, [], 0, [], True,
                                                              15, owners))}  # fmt: skip
    # On 15 the guard's trigger refuses COPY FROM: an owner is no exposure there.
    assert "table owners" not in on_15
    assert "where the guard's trigger does not stop it" in on_15["INSERT"].text
    on_17 = {f.subject: f for f in exposure_findings(Exposure(2, [], grants, [], 0, [], True,
                                                              17, owners))}  # fmt: skip
    assert "before the guard's trigger fires on PostgreSQL 17" in on_17["INSERT"].text
    assert "mallory (USAGE on server cognito)" in on_17["table owners"].text
    assert "REVOKE USAGE ON FOREIGN SERVER" in on_17["table owners"].fix
    assert on_17["table owners"].status == WARN
