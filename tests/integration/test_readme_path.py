"""The README and its pages as a newcomer meets them: every step, in order, on the dev stack.

In a directory laid out like a checkout after ``make dev`` (this checkout's ``sql/``, and
``.venv`` the environment running the tests, whose ``bin`` is on PATH as after
``source .venv/bin/activate``), the test runs what ``make dev`` runs,
``cognito-fdw dev up`` (with ``--no-psql``: there is no terminal; ``--mode local``: the
README's URLs are the local stack's), then each step of README.md and then of its pages in
the order of its "Further reading" (``PAGES`` of tests/support/readme_blocks.py): ``sql``
blocks through ``psql -v ON_ERROR_STOP=1`` on the URL the README gives, shell blocks
through ``bash -e -o pipefail``. It stops at the first step that fails, naming its page
and line. Then ``cognito-fdw dev down``, what ``make down`` runs, must
leave nothing running, and the server log must show no crashed backend.

When 54329 or 50009 are taken (other stacks on a shared machine), ``dev up`` takes other
ports; the steps then get the ports it reports in place of those two.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cognito_fdw.tools.host import multicorn_missing, postgres_bindir

from ..support.processes import listening, processes_mentioning, running
from ..support.readme_blocks import ENDPOINT_PLACEHOLDER, POOL_PLACEHOLDER, Block, steps

pytestmark = pytest.mark.skipif(
    multicorn_missing(postgres_bindir()) is not None,
    reason="the README's path runs on the local dev stack: it needs PostgreSQL with Multicorn2",
)

#: This checkout: its sql/ and its cognito_fdw package are the ones the steps use.
REPO_ROOT = Path(__file__).resolve().parents[2]
DB_PORT, MOTO_PORT = 54329, 50009
#: The README's URL of the dev database (section "Dev stack").
DEV_URL = f"postgresql://postgres@127.0.0.1:{DB_PORT}/postgres?passfile=.dev/pg/pgpass"
NEW_DATABASE = "readme_new_database"
STEP_TIMEOUT = 300
WARNING = re.compile(r"^psql:.*: (?:warning|WARNING):", re.MULTILINE)


class Checkout:
    """A directory laid out as a checkout, where the steps run, and their environment."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cognito-fdw-readme-"))
        self.root.chmod(0o755)  # as a checkout is: PostgreSQL's OS user must enter it
        # What the steps read; not the Makefile or pyproject.toml: no step may rebuild or
        # reinstall the shared environment.
        (self.root / "sql").symlink_to(REPO_ROOT / "sql")
        (self.root / ".venv").symlink_to(Path(sys.prefix))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_"))}
        self.env = {
            **env,
            "PATH": f"{self.root / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            # This checkout's package, whichever one the environment was installed from.
            "PYTHONPATH": str(REPO_ROOT),
            # No credentials but those a step gives: none from the developer's own files.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PAGER": "cat",
        }
        self.ports = {DB_PORT: DB_PORT, MOTO_PORT: MOTO_PORT}

    def run(self, argv: list[str], stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, cwd=self.root, env=self.env,
            timeout=STEP_TIMEOUT,
        )  # fmt: skip

    def cognito_fdw(self, *args: str) -> subprocess.CompletedProcess:
        return self.run([str(self.root / ".venv" / "bin" / "cognito-fdw"), *args])

    def state(self) -> dict:
        return json.loads((self.root / ".dev" / "state.json").read_text())

    def as_run(self, text: str) -> str:
        """A step's text with the ports the stack really has."""
        for readme_port, port in self.ports.items():
            text = text.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{port}")
        return text

    def psql(self, sql: str, url: str = DEV_URL) -> subprocess.CompletedProcess:
        return self.run(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", self.as_run(url), "-f", "-"], sql
        )


@pytest.fixture(scope="module")
def stack():
    """The dev stack as make dev starts it; stopped as make down stops it, which must leave
    nothing running."""
    checkout = Checkout()
    try:
        up = checkout.cognito_fdw("dev", "up", "--mode", "local", "--no-psql")
        assert up.returncode == 0, f"cognito-fdw dev up failed:\n{up.stdout}\n{up.stderr}"
        state = checkout.state()
        checkout.ports = {DB_PORT: state["db_port"], MOTO_PORT: state["moto_port"]}
        yield checkout
        down = checkout.cognito_fdw("dev", "down")
        assert down.returncode == 0, f"cognito-fdw dev down failed:\n{down.stderr}"
        assert not running(state["postgres_pid"]) and not running(state["moto_pid"])
        assert not listening(state["db_port"]) and not listening(state["moto_port"])
        assert processes_mentioning(str(checkout.root)) == []
        log = (checkout.root / ".dev" / "pg" / "server.log").read_text(errors="replace")
        crashes = re.findall(r".*(?:terminated by signal|PANIC|server process .* exited).*", log)
        assert not crashes, "a backend crashed during the README's steps:\n" + "\n".join(crashes)
    finally:
        checkout.cognito_fdw("dev", "down")  # whatever failed above: stop what was started
        shutil.rmtree(checkout.root, ignore_errors=True)


def run_step(checkout: Checkout, block: Block) -> subprocess.CompletedProcess:
    if block.language == "sql" and block.verb == "new-database":
        created = checkout.psql(f'CREATE DATABASE "{NEW_DATABASE}";')
        if created.returncode != 0:
            return created
        pool, endpoint = _server_options(checkout)
        text = block.text.replace(POOL_PLACEHOLDER, pool).replace(ENDPOINT_PLACEHOLDER, endpoint)
        return checkout.psql(text, DEV_URL.replace("/postgres?", f"/{NEW_DATABASE}?"))
    if block.language == "sql":
        return checkout.psql(block.text)
    return checkout.run(["bash", "-e", "-o", "pipefail", "-c", checkout.as_run(block.shell())])


def _server_options(checkout: Checkout) -> tuple[str, str]:
    """The dev stack's pool id and endpoint, from its server cognito_server."""
    query = checkout.run([
        "psql", "-X", "-A", "-t", "-d", checkout.as_run(DEV_URL), "-c",
        "SELECT option_value FROM pg_foreign_server s, pg_options_to_table(s.srvoptions) "
        "WHERE s.srvname = 'cognito_server' AND option_name IN ('user_pool_id', 'endpoint_url') "
        "ORDER BY option_name DESC",
    ])  # fmt: skip
    assert query.returncode == 0, query.stderr
    pool, endpoint = query.stdout.split()
    return pool, endpoint


def test_every_readme_step_in_order(stack):
    ran = []
    for block in steps():
        result = run_step(stack, block)
        # psql goes on after a warning of its own (a backslash command's extra argument)
        # or of the server's; a reader would see it, so it fails the step as well.
        if result.returncode != 0 or WARNING.search(result.stderr):
            pytest.fail(
                f"{block.page} line {block.line} (```{block.language}) failed with exit status "
                f"{result.returncode}, after {len(ran)} steps ran ({ran}; ports "
                f"{stack.ports}):\n{block.text}"
                f"--- stdout (end)\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
            )
        ran.append(f"{block.page}:{block.line}")
    print(f"ran {len(ran)} steps ({ran}); ports {stack.ports}")
