"""The seeder's and the CLI's plumbing, without a server."""

from __future__ import annotations

import io

import boto3
import pytest
from botocore.stub import Stubber

from cognito_fdw.tools import cli
from cognito_fdw.tools.seed import SeedError, TextProgress, ensure_pool


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_progress_redraws_in_place_on_a_tty():
    stream = _Stream(tty=True)
    progress = TextProgress(stream, "users")
    for done in range(1, 5):
        progress(done, 4)
    assert stream.getvalue().count("\r") == 4
    assert stream.getvalue().endswith("[" + "#" * 30 + "] 4/4 users\n")


def test_progress_prints_a_line_per_tenth_in_a_log():
    stream = _Stream(tty=False)
    progress = TextProgress(stream, "users")
    for done in range(1, 1001):
        progress(done, 1000)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[-1] == "1000/1000 users"
    for done in range(1, 4):  # the seed's second phase: each group's memberships
        progress(done, 3, "groups")
    assert stream.getvalue().splitlines()[11:] == ["1/3 groups", "2/3 groups", "3/3 groups"]


@pytest.mark.parametrize(
    "argv",
    [
        ["seed"],
        ["seed", "--pool-id", "p", "--pool-name", "n"],
        ["seed", "--pool-name", "n", "--users", "-1"],
        ["seed", "--pool-name", "n", "--users", "many"],
    ],
)
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "cognito-fdw" in capsys.readouterr().err


def test_pool_id_file_is_replaced_whole_in_a_directory_made_for_it(tmp_path):
    target = tmp_path / "pool_id"
    target.write_text("old-and-longer\n")
    cli.write_atomically(str(target), "us-east-1_abc\n")
    assert target.read_text() == "us-east-1_abc\n"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["pool_id"]
    cli.write_atomically(str(tmp_path / ".dev" / "pool_id"), "us-east-1_abc\n")
    assert (tmp_path / ".dev" / "pool_id").read_text() == "us-east-1_abc\n"


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """No AWS credentials anywhere botocore looks (and no instance metadata to ask)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_seed_without_keys_against_an_emulator_says_any_keys_do(no_credentials, capsys):
    argv = ["seed", "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"]
    assert cli.main([*argv, "--pool-name", "demo"]) == 1
    err = capsys.readouterr().err
    assert "no AWS credentials found" in err
    assert "http://127.0.0.1:9 is not AWS: an emulator such as moto takes any non-empty" in err
    assert "AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test cognito-fdw seed" in err
    assert "Traceback" not in err


def test_seed_without_keys_against_aws_names_the_chain(no_credentials, capsys):
    assert cli.main(["seed", "--region", "us-east-1", "--pool-name", "demo"]) == 1
    err = capsys.readouterr().err
    assert "no AWS credentials found" in err and "set AWS_PROFILE" in err
    assert "emulator" not in err


def _stubbed_client(pools: list[dict]):
    # Nothing listens on port 9: a POST to moto's seed endpoint there fails with SeedError.
    client = boto3.client(
        "cognito-idp", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    stubber = Stubber(client)
    stubber.add_response("list_user_pools", {"UserPools": pools}, {"MaxResults": 60})
    stubber.activate()
    return client


def test_moto_is_reseeded_only_before_it_creates_the_pool():
    # Reseeding while the pool's users exist would make moto draw their subs again for
    # users created later.
    client = _stubbed_client([{"Id": "us-east-1_demo", "Name": "demo"}])
    assert ensure_pool(client, "demo", moto_random_seed=1) == "us-east-1_demo"
    client = _stubbed_client([])
    with pytest.raises(SeedError, match="POST http://127.0.0.1:9/moto-api/seed\\?a=1 failed"):
        ensure_pool(client, "demo", moto_random_seed=1)
