"""The README's tables, and docs/architecture.md's module table, stay true to the registries
and the package they document; the generated reports are where ``make reliability`` writes
them."""

import re
from pathlib import Path

from cognito_fdw.columns import ALL_ATTRIBUTES, BUILTIN_COLUMNS, STANDARD_ATTRIBUTES
from cognito_fdw.optiondocs import readme_table
from cognito_fdw.tables.groups import GROUP_COLUMNS
from cognito_fdw.tables.members import MEMBER_COLUMNS
from cognito_fdw.tables.table import OBJECTS, table_class
from cognito_fdw.tables.user_pool import POOL_COLUMNS

from ..support.reliability import ATTACKS_HEADER, HEADER

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def test_the_options_table_is_the_registry():
    # Regenerate with: python -m cognito_fdw.optiondocs readme
    assert readme_table() in README


def test_every_column_and_standard_attribute_is_documented():
    names = {*BUILTIN_COLUMNS, *STANDARD_ATTRIBUTES, ALL_ATTRIBUTES}
    assert not [name for name in sorted(names) if f"`{name}`" not in README]


def test_every_object_and_its_columns_are_documented():
    for name in OBJECTS:
        assert f"`{name}`" in README
    for columns in (GROUP_COLUMNS, MEMBER_COLUMNS):
        assert not [name for name in columns if f"`{name}`" not in README]


def test_the_user_pool_table_is_its_registry():
    assert table_class("user_pool").fields is POOL_COLUMNS
    for name, spec in POOL_COLUMNS.items():
        assert f"| `{name}` | {spec.doc} |" in README


#: Where docs/multicorn.md is cited: the code, the SQL, the tests, bench and the pages.
CITING = ("cognito_fdw/**/*.py", "sql/*.sql", "tests/**/*.py", "bench/**/*.py", "*.md", "docs/*.md")
#: One citation: the page, an entry, a colon and its gist in a few words; more entries of one
#: citation follow after "; " ("docs/multicorn.md H2: ...; H3: ...").
_CITATION = re.compile(r"docs/multicorn\.md ((?:[HM]\d+: [^;)]+)(?:; [HM]\d+: [^;)]+)*)")
_ENTRY = re.compile(r"([HM]\d+): ([^;)]+)")
#: An entry's name anywhere: "H8", "M10" (not "H1..", the register's range).
_NAME = re.compile(r"(?<![\w/.-])([HM](?:1[0-9]|[1-9]))(?!\w|\.\.)")


def _citing_text(path: Path) -> str:
    """The text with comment and docstring lines joined (a citation may break across lines)
    and a Markdown link to the page read as the page's name."""
    text = re.sub(r"\[docs/multicorn\.md\]\([^)]*\)", "docs/multicorn.md", path.read_text())
    return re.sub(r"[ \t]*\n[ \t]*(?:#+ |-- |#$|--$)?[ \t]*", " ", text)


def test_every_multicorn_citation_names_an_entry_and_its_gist():
    register = ROOT / "docs" / "multicorn.md"
    entries = set(re.findall(r"^\*\*([HM]\d+)\. ", register.read_text(), re.M))
    # Not the register itself, nor this file, whose examples show the rule.
    files = {p for pattern in CITING for p in ROOT.glob(pattern)}
    files = sorted(files - {register, Path(__file__).resolve()})
    cited, problems = set(), []
    for path in files:
        text = _citing_text(path)
        assert "facts sheet" not in text, path
        if path.suffix in (".py", ".sql"):  # no tracker the repository does not hold
            assert not re.search(r"\bissues? #?\d", text, re.IGNORECASE), path
        covered = set()
        for citation in _CITATION.finditer(text):
            for entry in _ENTRY.finditer(text, citation.start(1), citation.end(1)):
                covered.add(entry.start(1))
                cited.add(entry[1])
                if entry[1] not in entries:
                    problems.append(f"{path.relative_to(ROOT)}: {entry[1]} is no entry")
                if len(entry[2].split()) < 2:
                    problems.append(f"{path.relative_to(ROOT)}: {entry[1]}: gist {entry[2]!r}")
        for name in _NAME.finditer(text):
            if name.start(1) not in covered:
                context = text[max(0, name.start() - 50) : name.end() + 30]
                problems.append(f"{path.relative_to(ROOT)}: {name[1]} without a gist: {context!r}")
    assert cited and not problems, "\n".join(problems)


def _built() -> str:
    return ARCHITECTURE.split("## Layout", 1)[1].split("\n## ", 1)[0]


def test_the_architecture_page_lists_every_module_of_the_server_side():
    section = _built()
    listed = set(re.findall(r"^\| `([\w/]+)\.py` \|", section, re.M))
    tools = re.search(r"^cognito_fdw/tools/ +developer tools: (.+)$", section, re.M)
    assert tools, "the layout names cognito_fdw/tools/"
    package = Path(__file__).parents[2] / "cognito_fdw"
    server = [p.relative_to(package) for p in package.rglob("*.py") if p.parts[-2] != "tools"]
    # A subpackage's __init__ is its line in the layout above, not a row of the table.
    rows = {
        p.with_suffix("").as_posix() for p in server if p.parent.name == "" or p.stem != "__init__"
    }
    assert listed == rows
    tool_modules = {path.stem for path in (package / "tools").glob("*.py")} - {"__init__"}
    assert set(tools.group(1).split(", ")) == tool_modules


def test_the_attack_table_is_its_own_generated_file_beside_reliability():
    # SECURITY.md keeps the threat model; the table of what was tried is ATTACKS.md, written
    # whole by `make reliability` as RELIABILITY.md is.
    makefile = (ROOT / "Makefile").read_text()
    assert "COGNITO_FDW_ATTACKS_REPORT=ATTACKS.md" in makefile
    assert "COGNITO_FDW_RELIABILITY_REPORT=RELIABILITY.md" in makefile
    for name, header in (("ATTACKS.md", ATTACKS_HEADER), ("RELIABILITY.md", HEADER)):
        assert (ROOT / name).read_text().startswith(header.split("Generated {date}")[0]), name
    security = (ROOT / "SECURITY.md").read_text()
    assert "## What the guard cannot stop" in security and "| attack |" not in security
