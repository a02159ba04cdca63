"""The package's layout: its rooms, what each may import, and no import circle.

``cognito_fdw/`` is the server side (Multicorn imports ``cognito_fdw.CognitoFdw`` inside the
backend); ``cognito_fdw/tools/`` holds the ``cognito-fdw`` command's tools, which run as
clients and start servers.  A tool module imported by the server would load argparse,
subprocess-spawning code and the demo data into every backend, and tie the wrapper to them.

The server side is grouped by the world each module touches (:data:`ROOMS`): the pure core
at the top of the package, ``pg/`` (every ctypes call into PostgreSQL and CPython), ``aws/``
(all that reaches Cognito or a credential), ``tables/`` (the objects), and ``fdw.py`` (the
Multicorn adapter).  A room imports only rooms below it, and only its room imports the
libraries of its world (:data:`WORLDS`).  No module of the package, the tools or bench
imports itself back through others, not even lazily inside a function: a helper two modules
share lives in a third.

The tests follow the package: ``tests/<tier>/test_<module>.py`` tests the server module
named ``<module>.py`` (in whichever room: the names are unique) and
``tests/<tier>/tools/test_<module>.py`` a tool module; a real-server test may instead be
named after the sql/ script it runs, and a few after a concern that spans modules
(:data:`CONCERNS`).  What tests share lives in ``tests/support``, never in a test module or
a ``conftest.py`` (which holds fixtures and pytest hooks only).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cognito_fdw"
SERVER_MODULES = sorted(
    p for p in PACKAGE.rglob("*.py") if "tools" not in p.relative_to(PACKAGE).parts
)
TOOL_MODULES = sorted((PACKAGE / "tools").glob("*.py"))
BENCH_MODULES = sorted((ROOT / "bench").glob("*.py"))

#: The server side's rooms, lowest first: a module imports only from its own room or one
#: below it.  "core" is every module at the top of the package but the adapter.
ROOMS = ("core", "pg", "aws", "tables", "adapter")
ADAPTER = {"cognito_fdw/__init__.py", "cognito_fdw/fdw.py"}

#: Libraries of one world, and the rooms (or single modules) that may import them.  errors.py
#: turns botocore's exceptions into the wrapper's errors: every room raises those, so it stays
#: in the core (importing only botocore.exceptions, which loads no client).
WORLDS = {
    "boto3": {"aws"},
    "botocore": {"aws", "cognito_fdw/errors.py"},
    "psycopg": {"aws"},  # the vault secret's loopback connection (aws/secrets.py)
    "ctypes": {"pg"},
    "multicorn": {"cognito_fdw/fdw.py"},
}


def room(path: Path) -> str:
    relative = path.relative_to(ROOT).as_posix()
    if relative in ADAPTER:
        return "adapter"
    inner = path.relative_to(PACKAGE).parts
    return inner[0] if len(inner) > 1 else "core"


def module_name(path: Path) -> str:
    """``cognito_fdw/aws/client.py`` -> ``cognito_fdw.aws.client`` (a package: its name)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, at top level or inside a function
    (and under ``if TYPE_CHECKING``): ``from a import b`` gives ``a`` and ``a.b``."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package[: len(package) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_no_server_module_imports_a_tool_module():
    assert len(SERVER_MODULES) > 5  # the glob found the package
    for path in SERVER_MODULES:
        tools = sorted(n for n in imported_names(path) if n.startswith("cognito_fdw.tools"))
        assert tools == [], f"{path.name} imports {tools}"


def test_the_tools_are_in_their_own_package():
    tools = {path.stem for path in TOOL_MODULES}
    assert {"cli", "seed", "doctor", "dev", "devstack"} <= tools
    assert not {"cli", "seed", "doctor", "dev", "devstack"} & {p.stem for p in SERVER_MODULES}


def test_every_server_module_is_in_a_room_and_its_name_is_unique():
    rooms = Counter(room(path) for path in SERVER_MODULES)
    assert set(rooms) == set(ROOMS), rooms  # a new folder is a new room: place it in ROOMS
    stems = Counter(path.stem for path in SERVER_MODULES if path.stem != "__init__")
    # tests/<tier>/test_<module>.py names a module by its file name alone.
    assert [stem for stem, count in stems.items() if count > 1] == []


def imports_of(path: Path) -> set[str]:
    """:func:`imported_names` but the module's own packages, which Python has initialised
    before the module (the client's ``from .. import __version__``): no import goes up."""
    name = module_name(path)
    return {other for other in imported_names(path) if not name.startswith(other + ".")}


def test_a_room_imports_only_rooms_below_it():
    rank = {module_name(path): ROOMS.index(room(path)) for path in SERVER_MODULES}
    for path in SERVER_MODULES:
        mine = ROOMS.index(room(path))
        above = sorted(name for name in imports_of(path) if rank.get(name, -1) > mine)
        assert above == [], f"{path.relative_to(ROOT)} ({room(path)}) imports {above}"


def test_only_its_room_imports_the_libraries_of_a_world():
    seen = set()
    for path in SERVER_MODULES:
        relative = path.relative_to(ROOT).as_posix()
        for name in imported_names(path):
            library = name.split(".")[0]
            if library in WORLDS:
                seen.add(library)
                allowed = WORLDS[library]
                assert room(path) in allowed or relative in allowed, (
                    f"{relative} imports {name}: only {sorted(allowed)} may"
                )
    assert seen == set(WORLDS)  # each rule still has a module to hold to it


#: What only the retry policy (cognito_fdw/aws/retries.py) names: botocore's retry rules and
#: config, and the event on which a rule decides whether an attempt is retried.
RETRY_POLICY = ("botocore.retries", "needs-retry", "total_max_attempts")


def test_the_retry_policy_is_in_one_place():
    policy = PACKAGE / "aws" / "retries.py"
    for path in SERVER_MODULES:
        tree = ast.parse(path.read_text())
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        named = imported_names(path) | {s for s in strings if isinstance(s, str)}
        found = sorted(w for w in RETRY_POLICY if any(w in name for name in named))
        expected = sorted(RETRY_POLICY) if path == policy else []
        assert found == expected, f"{path.relative_to(ROOT)} names {found}"


def import_graph(paths: list[Path]) -> dict[str, set[str]]:
    """Module -> the modules among ``paths`` it imports (:func:`imports_of`)."""
    modules = {module_name(path): path for path in paths}
    return {name: (imports_of(path) & modules.keys()) - {name} for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each module that is on one, as the path around it."""
    found, done = [], set()

    def visit(name, path):
        if name in path:
            found.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return found


def test_the_circle_finder_finds_a_lazy_import_back():
    # A function-level import counts: the package imports fdw.py inside __getattr__.
    graph = import_graph(SERVER_MODULES)
    assert "cognito_fdw.fdw" in graph["cognito_fdw"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_circle_in_the_package_the_tools_or_bench():
    graph = import_graph(SERVER_MODULES + TOOL_MODULES + BENCH_MODULES)
    assert len(graph) > 40 and sum(len(edges) for edges in graph.values()) > 100
    assert "bench.sync" in graph["bench.run"]  # bench's modules are in the graph too
    assert circles(graph) == []


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
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("cognito_fdw"))))
"""


def test_loading_the_wrapper_loads_no_tool_module():
    names = [module_name(path) for path in SERVER_MODULES]
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
                    "gateway", "hostile", "import", "load", "messages", "multicorn_boundary",
                    "pushdown_property", "readme_path", "sync_parts", "table_names", "uuid_sub"},
}  # fmt: skip


def files_of(tier: str) -> list[Path]:
    return sorted((TESTS / tier).rglob("test_*.py"))


def test_each_test_file_is_named_after_a_module_a_script_or_a_concern():
    modules = {path.stem for path in SERVER_MODULES}
    tools = {path.stem for path in TOOL_MODULES}
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


#: Modules tested in a file named after another module or a concern, and where: every other
#: module of the package has a test file of its own name.
TESTED_IN = {
    "__init__": ["unit/test_layout.py"],  # loading cognito_fdw.CognitoFdw, lazily
    "api": ["unit/test_client.py"],
    "attempts": ["unit/test_client.py", "integration/test_faults.py"],  # through the client
    "catalog": ["unit/test_backend.py", "integration/test_table_names.py",
                "integration/test_collations.py"],
    "dateguard": ["unit/test_backend.py", "integration/test_pushdown_property.py"],
    "objects": ["unit/test_fdw.py", "unit/test_importer.py"],  # the option's choices, the import
    "optiondocs": ["unit/test_options.py", "unit/test_readme.py"],
    "plans": ["unit/test_pushdown.py", "unit/test_scan.py"],
    "quota": ["unit/test_ratelimit.py"],
    "retries": ["unit/test_client.py", "integration/test_faults.py"],  # through the client
    "scrubbing": ["unit/test_errors.py", "unit/test_credentials.py"],
    "table": ["unit/test_fdw.py"],
    "vaultref": ["unit/test_credentials.py", "integration/test_secrets.py"],
    "tools/__init__": [],  # the package's marker only
    "tools/cli": ["unit/tools/test_dev.py", "unit/tools/test_seed.py",
                  "integration/tools/test_doctor.py"],  # each command through its tool
    "tools/devconfig": ["unit/tools/test_dev.py", "integration/tools/test_dev.py"],
    "tools/devdocker": ["unit/tools/test_dev.py"],
    "tools/devstack": ["unit/tools/test_dev.py", "integration/tools/test_dev.py"],
    "tools/host": ["integration/tools/test_dev.py", "integration/tools/test_doctor.py"],
    "tools/preflight": ["unit/tools/test_dev.py"],
}  # fmt: skip


def test_every_module_has_a_test_file_of_its_name_or_a_declared_place():
    tools = {f"tools/{path.stem}" for path in (PACKAGE / "tools").glob("*.py")}
    for module in sorted({path.stem for path in SERVER_MODULES} | tools):
        folder, _, name = module.rpartition("/")
        own = [TESTS / tier / folder / f"test_{name}.py" for tier in ("unit", "integration")]
        if any(path.exists() for path in own):
            assert module not in TESTED_IN, (
                f"{module} has its own test file: drop it from TESTED_IN"
            )
            continue
        assert module in TESTED_IN, (
            f"cognito_fdw/{module}.py has no test file of its name under tests/<tier>/: add one, "
            "or say in TESTED_IN where it is tested"
        )
        for place in TESTED_IN[module]:
            assert (TESTS / place).exists(), f"{module}: {place} does not exist"


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
