"""The package's layout: what PostgreSQL loads never reaches the developer tools.

``cognito_fdw/`` is the server side (Multicorn imports ``cognito_fdw.CognitoFdw`` inside the
backend); ``cognito_fdw/tools/`` holds the ``cognito-fdw`` command's tools, which run as
clients and start servers.  A tool module imported by the server would load argparse,
subprocess-spawning code and the demo data into every backend, and tie the wrapper to them.

The tests follow the package: ``tests/<tier>/test_<module>.py`` tests ``cognito_fdw/<module>.py``
and ``tests/<tier>/tools/test_<module>.py`` a tool module; a real-server test may instead be
named after the sql/ script it runs, and a few after a concern that spans modules
(:data:`CONCERNS`).  What tests share lives in ``tests/support``, never in a test module or
a ``conftest.py`` (which holds fixtures and pytest hooks only).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cognito_fdw"
SERVER_MODULES = sorted(path for path in PACKAGE.glob("*.py"))


def imported_names(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, at top level or inside a function."""
    package = "cognito_fdw"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # every server module sits directly in the package
                base = f"{package}.{base}" if base else package
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_no_server_module_imports_a_tool_module():
    assert len(SERVER_MODULES) > 5  # the glob found the package
    for path in SERVER_MODULES:
        tools = sorted(n for n in imported_names(path) if n.startswith("cognito_fdw.tools"))
        assert tools == [], f"{path.name} imports {tools}"


def test_the_tools_are_in_their_own_package():
    tools = {path.stem for path in (PACKAGE / "tools").glob("*.py")}
    assert {"cli", "seed", "doctor", "dev", "devstack"} <= tools
    assert not {"cli", "seed", "doctor", "dev", "devstack"} & {p.stem for p in SERVER_MODULES}


# Run in a fresh interpreter: this one has imported the tools already (other unit tests).
# Multicorn exists only inside PostgreSQL, so a module that hands out a class for any name
# stands in for it; nothing here runs the wrapper, it is only imported.
_IMPORT_SERVER_SIDE = """
import importlib, json, sys, types

def stub(name):
    module = types.ModuleType(name)
    module.__getattr__ = lambda attr: type(attr, (Exception,), {})
    sys.modules[name] = module

stub("multicorn")
stub("multicorn.utils")
import cognito_fdw
cognito_fdw.CognitoFdw  # what Multicorn loads
for name in sys.argv[1:]:
    importlib.import_module("cognito_fdw." + name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("cognito_fdw"))))
"""


def test_loading_the_wrapper_loads_no_tool_module():
    names = [path.stem for path in SERVER_MODULES if path.stem != "__init__"]
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_SERVER_SIDE, *names],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "cognito_fdw.fdw" in loaded
    assert [m for m in loaded if m.startswith("cognito_fdw.tools")] == []


# -- the tests' own layout ----------------------------------------------------------------

TESTS = ROOT / "tests"
#: Test files named after a concern that spans modules rather than after one module.
CONCERNS = {
    "unit": {"billing", "layout", "readme", "readme_blocks", "docker_files"},
    "integration": {"collations", "cost", "docker_stack", "encodings", "explain", "faults",
                    "hostile", "import",
                    "load", "messages", "pushdown_property", "readme_path", "sync_parts",
                    "table_names", "uuid_sub"},
}  # fmt: skip


def files_of(tier: str) -> list[Path]:
    return sorted((TESTS / tier).rglob("test_*.py"))


def test_each_test_file_is_named_after_a_module_a_script_or_a_concern():
    modules = {path.stem for path in SERVER_MODULES}
    tools = {path.stem for path in (PACKAGE / "tools").glob("*.py")}
    scripts = {path.stem for path in (ROOT / "sql").glob("*.sql")}
    for tier in ("unit", "integration"):
        found = files_of(tier)
        assert len(found) > 10, tier
        for path in found:
            name = path.stem.removeprefix("test_")
            if path.parent.name == "tools":
                assert name in tools, f"{path}: cognito_fdw/tools/ has no module {name}"
            else:
                allowed = modules | CONCERNS[tier] | (scripts if tier == "integration" else set())
                assert name in allowed, f"{path}: no module, sql/ script or concern {name!r}"


def _local_imports(path: Path) -> set[str]:
    """What ``path`` imports from the tests package, as paths below tests/ without .py."""
    package = path.relative_to(TESTS).parent.parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            parts = [*base, *(node.module.split(".") if node.module else [])]
            names.update("/".join([*parts, alias.name]) for alias in node.names)
            names.add("/".join(parts))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for name in [module] if module else [a.name for a in node.names]:
                if name.startswith("tests."):
                    names.add(name.removeprefix("tests.").replace(".", "/"))
    return names


def test_no_test_module_or_conftest_is_imported_by_another_file():
    files = sorted(TESTS.rglob("*.py"))
    assert len(files) > 40
    for path in files:
        for name in _local_imports(path):
            last = name.rsplit("/", 1)[-1]
            assert not last.startswith("test_") and last != "conftest", (
                f"{path.relative_to(ROOT)} imports {name}: shared helpers belong in tests/support"
            )


def test_conftest_files_hold_fixtures_and_hooks_only():
    for path in sorted(TESTS.rglob("conftest.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                raise AssertionError(f"{path}: class {node.name}: move it to tests/support")
            if isinstance(node, ast.FunctionDef):
                fixture = any("fixture" in ast.unparse(d) for d in node.decorator_list)
                assert fixture or node.name.startswith("pytest_"), (
                    f"{path}: {node.name} is neither a fixture nor a hook: move it to tests/support"
                )
