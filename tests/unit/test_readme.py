"""The README's tables stay true to the registries they document."""

from pathlib import Path

from cognito_fdw.columns import ALL_ATTRIBUTES, BUILTIN_COLUMNS, STANDARD_ATTRIBUTES
from cognito_fdw.optiondocs import readme_table

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_the_options_table_is_the_registry():
    # Regenerate with: python -m cognito_fdw.optiondocs readme
    assert readme_table() in README


def test_every_column_and_standard_attribute_is_documented():
    names = {*BUILTIN_COLUMNS, *STANDARD_ATTRIBUTES, ALL_ATTRIBUTES}
    assert not [name for name in sorted(names) if f"`{name}`" not in README]
