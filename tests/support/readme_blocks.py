"""The fenced code blocks of the README and of its pages, in order, as the README test runs them.

The path is README.md, then the pages of its "Further reading" in their order (:data:`PAGES`).

A block whose info string is ``sql``, ``sh``, ``bash`` or ``console`` is a step: the test
runs it (``sql`` through psql, ``sh``/``bash`` through bash, the ``$ `` lines of a
``console`` block through bash, their output lines being an example). A block with no info
string is output and is never run. Any other info string is refused, so that a block meant
as a step cannot be skipped by a typo (```shell, ```psql).

A step the test must not run says so on the line before its opening fence::

    <!-- readme-test: skip (why: real AWS, pg_cron, the system's Python, ...) -->

and a step for the reader's own database, run by the test in a new database of the dev
stack with the dev pool's id and endpoint in place of the README's placeholders::

    <!-- readme-test: new-database (why) -->
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: The newcomer's path: the README, then its pages in the order its "Further reading" lists
#: them (a unit test keeps the two equal). Each page's steps run after the pages before it.
PAGES = (
    "README.md",
    "docs/development.md",
    "docs/credentials.md",
    "docs/pushdown.md",
    "docs/sync.md",
    "docs/hot-paths.md",
    "docs/errors.md",
    "docs/architecture.md",
)
#: Pages under docs/ that are not on the path: docs/multicorn.md's SQL shows what crashes a
#: backend, and must never run; docs/managed-postgresql.md needs two clusters, and
#: tests/integration/test_gateway.py runs its recipe in order; docs/docker.md needs a Docker
#: engine, and the Docker tiers (tests/support/docker.py) run what it describes.
NOT_ON_PATH = ("docs/multicorn.md", "docs/managed-postgresql.md", "docs/docker.md")

STEP_LANGUAGES = ("sql", "sh", "bash", "console")
#: What a new-database step's placeholders become: the README's example pool id and the
#: emulator endpoint of its "Using it" example.
POOL_PLACEHOLDER = "us-east-1_AbCdEf123"
ENDPOINT_PLACEHOLDER = "http://127.0.0.1:5000"

_FENCE = re.compile(r"^(?P<indent> *)```(?P<info>\S*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(?P<verb>[\w-]+)\s*(?:\((?P<why>[^)]*)\))?\s*-->$")
_VERBS = ("skip", "new-database")


class ReadmeError(ValueError):
    """The README's blocks or markers cannot be read as steps; the message says where."""


@dataclass(frozen=True)
class Block:
    """One fenced block: ``line`` is the 1-based line of its opening fence."""

    line: int
    language: str
    text: str
    verb: str | None = None  # "skip" or "new-database", from the marker before it
    why: str = ""
    page: str = "README.md"

    @property
    def is_step(self) -> bool:
        return self.language in STEP_LANGUAGES

    @property
    def runs(self) -> bool:
        return self.is_step and self.verb != "skip"

    def shell(self) -> str:
        """The bash script of an ``sh``/``bash`` block, or of a ``console`` block's ``$ ``
        lines (with their ``\\`` continuation lines)."""
        if self.language != "console":
            return self.text
        commands, continued = [], False
        for line in self.text.splitlines():
            if line.startswith("$ ") or continued:
                commands.append(line[2:] if line.startswith("$ ") and not continued else line)
                continued = line.endswith("\\")
        return "\n".join(commands) + "\n"


def blocks(text: str | None = None, page: str = "README.md") -> list[Block]:
    """Every fenced block of ``text`` (default: the file ``page``), in order; ReadmeError for
    an unclosed fence, an unknown info string, or a marker that is malformed or not right
    before a step."""
    lines = ((ROOT / page).read_text() if text is None else text).splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        verb, why = None, ""
        if lines[i].lstrip().startswith("<!--") and "readme-test" in lines[i]:
            verb, why = _marker(lines, i, page)
            i += 1
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, info = len(fence["indent"]), fence["info"]
        if info and info not in STEP_LANGUAGES:
            raise ReadmeError(
                f"{page} line {i + 1}: ```{info} is neither a step ({', '.join(STEP_LANGUAGES)})"
                " nor output (no info string)"
            )
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ReadmeError(f"{page} line {i + 1}: the block is never closed")
        body = "".join(line[indent:] + "\n" for line in lines[i + 1 : end])
        found.append(Block(i + 1, info, body, verb, why, page))
        i = end + 1
    return found


def _marker(lines: list[str], i: int, page: str) -> tuple[str, str]:
    match = _MARKER.match(lines[i])
    if not match or match["verb"] not in _VERBS or not (match["why"] or "").strip():
        raise ReadmeError(
            f"{page} line {i + 1}: write <!-- readme-test: skip (why) --> or "
            f"<!-- readme-test: new-database (why) -->, not {lines[i].strip()!r}"
        )
    fence = _FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
    if not fence or fence["info"] not in STEP_LANGUAGES:
        raise ReadmeError(f"{page} line {i + 1}: the marker is not right before a step's block")
    return match["verb"], match["why"].strip()


def path_blocks() -> list[Block]:
    """Every block of every page of the path, in the path's order."""
    return [block for page in PAGES for block in blocks(page=page)]


def steps(text: str | None = None) -> list[Block]:
    """The blocks the README test runs, in order: of ``text``, or (default) of the path."""
    found = path_blocks() if text is None else blocks(text)
    return [block for block in found if block.runs]
