"""The README's tables stay true to the registries they document."""

import re
from pathlib import Path

from cognito_fdw.columns import ALL_ATTRIBUTES, BUILTIN_COLUMNS, STANDARD_ATTRIBUTES
from cognito_fdw.optiondocs import readme_table
from cognito_fdw.tables.groups import GROUP_COLUMNS
from cognito_fdw.tables.members import MEMBER_COLUMNS
from cognito_fdw.tables.table import OBJECTS, table_class
from cognito_fdw.tables.user_pool import POOL_COLUMNS

README = (Path(__file__).parents[2] / "README.md").read_text()


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


def test_every_cited_multicorn_entry_exists():
    # Comments cite docs/multicorn.md by entry ("docs/multicorn.md H8"); none cites a
    # document outside the repository.
    root = Path(__file__).parents[2]
    entries = set(
        re.findall(r"^\*\*([HM]\d+)\. ", (root / "docs" / "multicorn.md").read_text(), re.M)
    )
    files = [*root.glob("cognito_fdw/**/*.py"), *root.glob("sql/*.sql"), root / "README.md"]
    cited = {}
    for path in files:
        text = path.read_text()
        assert "facts sheet" not in text, path
        for entry in re.findall(r"multicorn\.md\)?\s+([HM]\d+)", text):
            cited.setdefault(entry, path)
    assert cited and not {e: str(p) for e, p in cited.items() if e not in entries}


def _built() -> str:
    return README.split("## How it is built", 1)[1].split("\n## ", 1)[0]


def test_how_it_is_built_lists_every_module_of_the_server_side():
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
