"""Tier 1: credential options, source precedence, cache keys, the loopback's conninfo, guard.sql."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import botocore.credentials
import pytest

from cognito_fdw.aws import credentials, secrets, vaultref
from cognito_fdw.errors import CognitoFdwError, CredentialError, OptionError
from cognito_fdw.options import OPTIONS, SECRET_OPTIONS, USER_MAPPING_OPTIONS, parse_options
from cognito_fdw.pg import backend
from cognito_fdw.scrubbing import scrub

ROOT = Path(__file__).resolve().parents[2]
BASE = {"user_pool_id": "us-east-1_AbC123", "object": "users"}
ROLE = "arn:aws:iam::123456789012:role/reader"


def opts(**extra):
    return parse_options({**BASE, **extra})


# -- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"api_key_id": "x", "api_key_name": "y", "aws_access_key_id": "A"}, "both set"),
        ({"api_key_name": "y"}, "missing option aws_access_key_id"),
        ({"aws_access_key_id": "A"}, "missing option aws_secret_access_key"),
        ({"aws_access_key_id": "A", "api_key_name": "n", "aws_session_token": "t"}, "needs"),
        ({"role_arn": "arn:aws:iam::1:role/x"}, "invalid value for option role_arn"),
        ({"external_id": "e"}, "option external_id needs role_arn"),
        ({"role_arn": ROLE, "role_session_name": "a b"}, "role_session_name"),
        ({"role_arn": ROLE, "role_duration_seconds": "60"}, "role_duration_seconds"),
        ({"sts_endpoint_url": "ftp://x"}, "invalid value for option sts_endpoint_url"),
        ({"secret_cache_seconds": "-1"}, "secret_cache_seconds"),
    ],
)
def test_bad_credential_options_name_the_option(extra, message):
    with pytest.raises(OptionError, match=message) as info:
        opts(**extra)
    assert info.value.hint


def test_credential_option_values_stay_out_of_reprs():
    options = opts(
        aws_access_key_id="A", api_key_name="n", secrets_conninfo="password=pw",
        role_arn=ROLE, external_id="ext-secret",
    )  # fmt: skip
    assert "pw" not in repr(options)
    assert "ext-secret" not in repr(options)
    assert "ext-secret" not in repr(credentials.resolve(options))
    assert {getattr(options, name) for name in SECRET_OPTIONS} - {None} == {
        "password=pw",
        "ext-secret",
    }


# -- precedence -------------------------------------------------------------------------


def test_keys_win_over_a_vault_secret_and_a_profile():
    source = credentials.resolve(
        opts(aws_access_key_id="A", aws_secret_access_key="S", api_key_name="n", aws_profile="p")
    )
    assert (source.kind, source.key_id) == ("keys", "A")


def test_a_vault_secret_wins_over_a_profile():
    source = credentials.resolve(opts(aws_access_key_id="A", api_key_id="42", aws_profile="p"))
    assert source.kind == "vault"
    assert (source.vault.relation, source.vault.column, source.vault.value) == (
        "vault.decrypted_secrets", "id", "42",
    )  # fmt: skip


def test_profile_then_chain_and_a_role_on_top_of_any():
    assert credentials.resolve(opts(aws_profile="p")).profile == "p"
    source = credentials.resolve(opts(role_arn=ROLE, external_id="e", role_session_name="s-1"))
    assert source.kind == "chain"
    assert (source.role.arn, source.role.session_name, source.role.duration) == (ROLE, "s-1", 3600)
    assert source.describe() == f"role {ROLE} assumed with the default AWS credential chain " \
        "of the server's OS user"  # fmt: skip


def test_keys_are_read_from_the_vault_only_for_a_vault_source(monkeypatch):
    calls = []

    def read(ref):
        calls.append(ref)
        return "from-vault"

    monkeypatch.setattr(secrets, "read_secret", read)
    keys = credentials.for_options(opts(aws_access_key_id="A", api_key_name="n")).keys
    assert (keys.access_key, keys.secret_key, keys.token) == ("A", "from-vault", None)
    assert credentials.for_options(opts()).keys is None
    assert [ref.value for ref in calls] == ["n"]


# -- cache keys -------------------------------------------------------------------------


def test_cache_keys_hold_fingerprints_not_secrets():
    options = opts(
        aws_access_key_id="A", aws_secret_access_key="S3CRET", aws_session_token="T0KEN",
        role_arn=ROLE, external_id="EXT1D", secrets_conninfo="password=PW",
    )  # fmt: skip
    found = credentials.for_options(options)
    text = repr((found, found.slot(), found.version()))
    for secret in ("S3CRET", "T0KEN", "EXT1D", "PW"):
        assert secret not in text
    rotated = credentials.Credentials(found.source, credentials.Keys("A", "S3CRET2"))
    assert rotated.version() != found.version()
    assert rotated.slot() == found.slot()


def test_fingerprints_are_keyed_per_process():
    import hashlib

    assert vaultref.fingerprint("x") != hashlib.sha256(b"x").hexdigest()
    assert vaultref.fingerprint("x") == vaultref.fingerprint("x")
    assert vaultref.fingerprint(None) is None


# -- sessions ---------------------------------------------------------------------------


def test_a_missing_profile_is_a_credential_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    found = credentials.for_options(opts(aws_profile="nope"))
    with pytest.raises(CredentialError, match="AWS profile 'nope'"):
        found.session("us-east-1")


def test_a_role_session_refreshes_through_sts_lazily():
    options = opts(aws_access_key_id="A", aws_secret_access_key="S", role_arn=ROLE)
    session = credentials.for_options(options).session("us-east-1")
    creds = session._session.get_credentials()
    assert isinstance(creds, botocore.credentials.DeferredRefreshableCredentials)
    assert creds.method == "assume-role"


def test_assume_role_without_base_credentials_says_so(monkeypatch, tmp_path):
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    found = credentials.for_options(opts(role_arn=ROLE))
    with pytest.raises(CredentialError, match="no credentials to assume role"):
        found.session("us-east-1")


# -- the loopback -----------------------------------------------------------------------


def test_loopback_conninfo_fills_in_what_the_user_left_out():
    defaults = {"host": "/run/postgresql", "port": "5433", "dbname": "app"}
    conninfo = secrets.loopback_conninfo("user=reader dbname=other", defaults)
    from psycopg.conninfo import conninfo_to_dict

    parsed = conninfo_to_dict(conninfo)
    assert parsed["user"] == "reader"
    assert parsed["dbname"] == "other"
    assert (parsed["host"], parsed["port"]) == ("/run/postgresql", "5433")
    assert parsed["application_name"] == secrets.APPLICATION_NAME
    assert "lock_timeout" in parsed["options"]


def test_loopback_without_a_socket_asks_for_secrets_conninfo():
    with pytest.raises(CredentialError, match="cannot find how to connect"):
        secrets.loopback_conninfo(None, {"port": "5432", "dbname": "app"})


def test_outside_a_backend_the_current_role_is_an_error():
    with pytest.raises(CredentialError, match="inside a PostgreSQL backend"):
        backend.current_role()


def test_without_psycopg_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    ref = vaultref.VaultRef("vault.decrypted_secrets", "name", "n")
    with pytest.raises(CredentialError, match="need psycopg") as info:
        secrets._fetch(ref, "alice")
    assert "pip install" in info.value.hint


def test_secrets_read_at_run_time_are_scrubbed_from_every_message():
    from cognito_fdw.scrubbing import remember_secret

    remember_secret("run-time-s3cret")
    error = CognitoFdwError("failed with run-time-s3cret", hint="x run-time-s3cret")
    assert "run-time-s3cret" not in repr(error.scrubbed([]).__dict__)
    assert scrub("run-time-s3cret!") == "***!"


# -- the guard and the process environment ----------------------------------------------


def test_cognito_fdw_sql_installs_the_guard():
    assert "\\ir guard.sql" in (ROOT / "sql" / "cognito_fdw.sql").read_text()


def test_no_module_writes_the_process_environment():
    for path in (ROOT / "cognito_fdw").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"os\.environ\[[^]]+\]\s*=|putenv|environ\.update|setdefault", text)


def test_every_option_a_user_mapping_may_set_decides_whether_the_owner_reads_the_secret():
    # A mapping option missing here could change how the server's secret is used while it
    # is still read with the server owner's rights (cognito_fdw.aws.secrets._server_owner).
    assert set(USER_MAPPING_OPTIONS) <= set(vaultref.SECRET_USE_OPTIONS)
    assert set(vaultref.SECRET_USE_OPTIONS) <= set(OPTIONS)
