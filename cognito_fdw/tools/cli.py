"""The ``cognito-fdw`` command line.

    cognito-fdw seed --endpoint-url http://127.0.0.1:5000 --pool-name demo --users 200 --groups
    cognito-fdw doctor postgresql://postgres@127.0.0.1:54329/postgres
    cognito-fdw dev up | down        (what make dev / make down run)

Each subcommand is a ``_add_<name>`` function that declares its arguments and sets
``handler``; ``main`` only dispatches. Credentials come from the standard AWS chain
(environment, profile, instance role); against moto any non-empty keys do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from cognito_fdw.tools.seed import SeedError, TextProgress, ensure_pool, seed_pool

PROG = "cognito-fdw"

#: Retries absorb TooManyRequestsException (a quota shared with every app on the pool);
#: standard mode backs off exponentially with jitter.
RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 10})

#: Below this many users a non-TTY stderr gets no progress lines (logs stay short).
PROGRESS_THRESHOLD = 1000


def make_client(region: str | None, endpoint_url: str | None):
    """A cognito-idp client for the CLI; ``region`` None means the AWS config's default."""
    return boto3.client(
        "cognito-idp", region_name=region, endpoint_url=endpoint_url, config=RETRY_CONFIG
    )


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` so that a reader (the db container's init script) never sees half of it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as handle:
        handle.write(text)
    # NamedTemporaryFile makes the file 0600; the reader may be another user (postgres in the
    # db container reads what root wrote in the seed container). A pool id is no secret.
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


def _add_seed(subparsers) -> None:
    parser = subparsers.add_parser(
        "seed",
        help="fill a user pool with deterministic demo users and groups",
        description="Fill a user pool with demo users user0001..userNNNN (and groups). "
        "Rerunning is safe: existing users and groups are kept, not duplicated. "
        "Prints the pool id on stdout.",
    )
    parser.add_argument("--endpoint-url", help="e.g. http://127.0.0.1:5000 for moto")
    parser.add_argument("--region", help="AWS region (default: from the AWS config)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--pool-id", help="seed this existing pool")
    target.add_argument("--pool-name", help="seed the pool of this name, creating it if needed")
    parser.add_argument("--users", type=_count, default=200, help="number of users (default 200)")
    parser.add_argument("--groups", action="store_true", help="also create groups with members")
    parser.add_argument("--pool-id-file", help="also write the pool id to this file")
    parser.add_argument(
        "--moto-random-seed", type=_count, metavar="N",
        help="moto only: seed the emulator's random generator before it creates the pool, so "
        "that the users get the same subs on every fresh emulator",
    )  # fmt: skip
    parser.set_defaults(handler=_seed)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text!r}")
    return value


def _seed(args: argparse.Namespace) -> int:
    client = make_client(args.region, args.endpoint_url)
    pool_id = args.pool_id or ensure_pool(client, args.pool_name, args.moto_random_seed)
    show_progress = sys.stderr.isatty() or args.users >= PROGRESS_THRESHOLD
    progress = TextProgress(sys.stderr, "users") if show_progress and args.users else None
    groups = " and the demo groups" if args.groups else ""
    print(f"{PROG} seed: pool {pool_id}: {args.users} demo users{groups}", file=sys.stderr)
    summary = seed_pool(client, pool_id, users=args.users, groups=args.groups, progress=progress)
    print(summary, file=sys.stderr)
    if args.pool_id_file:
        write_atomically(args.pool_id_file, pool_id + "\n")
    print(pool_id)
    return 0


def _add_doctor(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check an installation: multicorn, the server's Python, servers, tables, Cognito",
        description="Check a PostgreSQL with cognito_fdw from the outside, changing nothing "
        "(every probe is rolled back). Prints each problem with its fix; exits 1 when "
        "something is broken. Needs psycopg (pip install 'cognito-fdw[doctor]').",
    )
    parser.add_argument("dsn", metavar="DSN", help="libpq connection string or URI")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per probe (default 10)"
    )
    parser.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    try:
        from cognito_fdw.tools.doctor import diagnose

        # Each finding as it is found: a probe may take up to --timeout.
        report = diagnose(args.dsn, args.timeout, echo=lambda text: print(text, flush=True))
    except ImportError as error:
        print(
            f"{PROG} doctor: needs psycopg ({error}): pip install 'cognito-fdw[doctor]'",
            file=sys.stderr,
        )
        return 2
    print(report.summary())
    return 1 if report.failed else 0


def _add_dev(subparsers) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="start or stop the dev stack (make dev / make down)",
        description="up: the compose stack with a Docker engine, else a local one under "
        "--base (PostgreSQL with Multicorn2, moto, a seeded demo pool), then psql on it. "
        "down: stop whichever runs.",
    )
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--base", default=".dev", help="the local stack's directory (.dev)")
    parser.add_argument(
        "--mode", choices=("auto", "docker", "local"), default="auto",
        help="auto (default) prefers Docker when its engine answers",
    )  # fmt: skip
    parser.add_argument(
        "--no-psql", dest="psql", action="store_false", help="do not open psql at the end"
    )
    parser.set_defaults(handler=_dev)


def _dev(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cognito_fdw.tools import dev
    from cognito_fdw.tools.host import NotACheckout

    base = Path(args.base).resolve()
    try:
        if args.action == "up":
            return dev.up(base, args.mode, args.psql)
        return dev.down(base)
    except (dev.DevError, NotACheckout) as error:
        print(f"{PROG} dev: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        output = error.stderr or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        print(f"{PROG} dev: `{' '.join(map(str, error.cmd))}` failed\n{output}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Tools for cognito-fdw.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_seed(subparsers)
    _add_doctor(subparsers)
    _add_dev(subparsers)
    return parser


def _describe(error: Exception, args: argparse.Namespace) -> str:
    if isinstance(error, NoCredentialsError):
        text = "no AWS credentials found (environment, shared files, or instance role)"
        endpoint = getattr(args, "endpoint_url", None)
        host = (urlsplit(endpoint).hostname or "") if endpoint else ""
        if endpoint and not host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
            # An emulator (moto, LocalStack) checks that keys are there, not what they are.
            return (
                f"{text}; {endpoint} is not AWS: an emulator such as moto takes any non-empty "
                f"keys, e.g. AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test {PROG} "
                f"{args.command} ..."
            )
        return f"{text}: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown")
        message = error.response.get("Error", {}).get("Message", "")
        request_id = error.response.get("ResponseMetadata", {}).get("RequestId")
        text = f"{code}: {message}"
        return f"{text} (request id {request_id})" if request_id else text
    return str(error)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ClientError, BotoCoreError, SeedError, OSError) as error:
        # One line the user can act on; a traceback of botocore internals would bury it.
        print(f"{PROG} {args.command}: error: {_describe(error, args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
