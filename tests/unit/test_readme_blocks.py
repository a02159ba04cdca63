"""How the README test reads the blocks of the README and its pages, and that the path is all
there: a newcomer's steps run in order, the few skipped ones say why, every page under docs/
is on the path (or declared off it) in the order the README lists it, and ``make dev``/
``make down`` run the commands the README test runs in their place."""

from __future__ import annotations

import re

import pytest

from ..support.readme_blocks import (
    NOT_ON_PATH,
    PAGES,
    README,
    ROOT,
    ReadmeError,
    blocks,
    path_blocks,
    steps,
)

MAKEFILE = ROOT / "Makefile"

#: What a newcomer does on the dev stack, in the path's order (the README, then its pages):
#: each must be in a step that runs, after the one before it.
PATH = [
    "JOIN cognito.users u ON u.sub = o.user_sub",  # the headline
    "multicorn.so",  # Installing: the embedded Python
    "CREATE FOREIGN TABLE cognito.users",  # Using it
    "INSERT INTO cognito.group_members",
    "IMPORT FOREIGN SCHEMA cognito FROM SERVER cognito_server INTO cognito",
    "cognito-fdw seed",  # docs/development.md
    "cognito-fdw doctor",
    "CREATE USER MAPPING FOR alice",  # docs/credentials.md
    "\\i sql/vault.sql",
    "vault.create_secret(",
    "api_key_name 'cognito'",
    "given_name ILIKE",  # docs/pushdown.md: EXPLAIN
    "user_sub::text AS sub",  # joining on sub
    "\\i sql/sync.sql",  # docs/sync.md
    "app.sync_users()",
]


def test_the_newcomers_path_runs_in_order():
    text = [block.text for block in steps()]
    where = []
    for needle in PATH:
        found = [i for i, step in enumerate(text) if needle in step]
        assert found, f"no step of the README that the README test runs has {needle!r}"
        where.append(found[0])
    assert where == sorted(where), list(zip(PATH, where))


def test_the_skipped_steps_are_few_and_say_why():
    skipped = [block for block in path_blocks() if block.is_step and not block.runs]
    assert all(block.why for block in skipped)
    # make dev/test/down (twice), pg_cron, an IAM role, pip into the system's Python.
    assert len(skipped) <= 5, [(block.line, block.why) for block in skipped]


def test_every_page_under_docs_is_on_the_path_or_declared_off_it():
    pages = {f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")}
    assert pages == set(PAGES[1:]) | set(NOT_ON_PATH)


def test_the_readme_lists_its_pages_in_the_paths_order():
    further = README.read_text().split("## Further reading", 1)[1]
    listed = re.findall(r"^\d+\. \[[^]]+\]\((docs/[\w.-]+\.md)\)", further, re.MULTILINE)
    assert listed == list(PAGES[1:])


def _recipe(target: str) -> str:
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.MULTILINE)
    assert match, f"the Makefile has no {target} target"
    return match[1]


@pytest.mark.parametrize(("target", "command"), [("dev", "dev up"), ("down", "dev down")])
def test_make_dev_and_down_run_what_the_readme_test_runs(target, command):
    assert f"cognito-fdw {command}" in _recipe(target)


def test_blocks_in_order_with_their_markers():
    text = (
        "```sql\nSELECT 1;\n```\n"
        "<!-- readme-test: skip (real AWS) -->\n```sh\naws sts get-caller-identity\n```\n"
        "1. a list item:\n\n   ```bash\n   echo indented\n   ```\n"
        "```\nan example's output\n```\n"
    )
    found = blocks(text)
    assert [(b.line, b.language, b.verb, b.why) for b in found] == [
        (1, "sql", None, ""), (5, "sh", "skip", "real AWS"), (10, "bash", None, ""),
        (13, "", None, ""),
    ]  # fmt: skip
    assert found[2].text == "echo indented\n"
    assert [b.line for b in steps(text)] == [1, 10]


def test_a_console_block_runs_its_prompted_lines():
    (block,) = blocks("```console\n$ echo a \\\n  b\na b\n$ true\n```\n")
    assert block.shell() == "echo a \\\n  b\ntrue\n"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("```shell\nls\n```\n", "neither a step"),
        ("```sql\nSELECT 1;\n", "never closed"),
        ("<!-- readme-test: skip -->\n```sql\nSELECT 1;\n```\n", "write <!--"),
        ("<!-- readme-test: ignore (x) -->\n```sql\nSELECT 1;\n```\n", "write <!--"),
        ("<!-- readme-test: skip (x) -->\n\n```sql\nSELECT 1;\n```\n", "not right before"),
        ("<!-- readme-test: skip (x) -->\n```\noutput\n```\n", "not right before"),
    ],
)
def test_a_block_or_marker_the_test_cannot_read_is_refused(text, complaint):
    with pytest.raises(ReadmeError, match=complaint):
        blocks(text)
