"""The package's layout: what PostgreSQL loads never reaches the developer tools.

``cognito_fdw/`` is the server side (Multicorn imports ``cognito_fdw.CognitoFdw`` inside the
backend); ``cognito_fdw/tools/`` holds the ``cognito-fdw`` command's tools, which run as
clients and start servers.  A tool module imported by the server would load argparse,
subprocess-spawning code and the demo data into every backend, and tie the wrapper to them.
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
