"""The package's layout, read from its source: no import circle, the edge side and the shared core free of the
trainer and TensorFlow, short modules and functions.

Imports are read from the syntax tree of every module, wherever they are written (module level, inside a
function, under ``if``/``try``), so a lazy import counts like any other. Nothing is imported here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "edge_signs"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# The composition root: the commands, the one place that may join the two worlds.
COMPOSITION_ROOT = {"edge_signs.cli", "edge_signs.cli_base", "edge_signs.cli_train", "edge_signs.__main__"}
TENSORFLOW = ("tensorflow", "keras", "tf_keras")
DYNAMIC_IMPORTS = {"import_module", "__import__"}  # importlib.import_module("a.b") with a literal name is an import too


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports, as a dotted name
    line: int


def find_modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` (a package is its __init__.py)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = find_modules(PACKAGE)


def resolve(name: str, modules: dict[str, Path]) -> str:
    """The deepest module a dotted name lies in ('edge_signs.data.load_signs' -> 'edge_signs.data')."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str, modules: dict[str, Path]) -> list[Import]:
    """Every import in ``module``, wherever it is written: ``import a.b``, ``from a import b``, ``from . import x``."""
    path = modules[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            # `from a import b` imports the module a.b where there is one, else a name defined in a
            found += [Import(module, f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base, node.lineno)
                      for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in DYNAMIC_IMPORTS
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append(Import(module, node.args[0].value, node.lineno))
    return found


def graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module in modules:
        for i in imports_of(module, modules):
            target = resolve(i.target, modules)
            if target in modules and target != module:
                edges[module].add(target)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def is_edge_or_shared(module: str) -> bool:
    """edge_signs.edge and its modules, or a top-level module of edge_signs (the shared core) other than the commands."""
    return (module == "edge_signs.edge" or module.startswith("edge_signs.edge.")
            or (module.count(".") <= 1 and module != "edge_signs.trainer" and module not in COMPOSITION_ROOT))


def is_trainer_or_tensorflow(target: str, modules: dict[str, Path]) -> bool:
    where = resolve(target, modules)
    return where == "edge_signs.trainer" or where.startswith("edge_signs.trainer.") or target.split(".")[0] in TENSORFLOW


def function_lengths(modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(module, function and its line, lines from ``def`` to its last line) of every function and method, nested ones too."""
    found = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((module, f"{node.name} (line {node.lineno})", node.end_lineno - node.lineno + 1))
    return found


def module_lengths(modules: dict[str, Path]) -> dict[str, int]:
    return {module: len(path.read_text().splitlines()) for module, path in modules.items()}


# -- the reader, on a package written here ------------------------------------------------------------------------


@pytest.fixture
def toy(tmp_path) -> dict[str, Path]:
    """A small package with a circle through a relative import and a lazy one, and a lazy trainer import on its edge side."""
    files = {
        "__init__.py": "",
        "config.py": "",
        "edge/__init__.py": "from . import live\n",
        "edge/live.py": "import edge_signs.config\nfrom .display import Window\n",
        "edge/display.py": "def draw():\n    from edge_signs.edge.live import run\n",
        "edge/evaluate.py": "import importlib\n\n\ndef keras():\n    return importlib.import_module('edge_signs.trainer.evaluate')\n",
        "trainer/__init__.py": "import tensorflow as tf\n",
        "trainer/evaluate.py": "from ..edge import live\nfrom .. import config\n",
        "cli.py": "from edge_signs.trainer import evaluate\n",
        "long.py": "def long():\n" + "    x = 1\n" * 60,
    }
    for name, text in files.items():
        (tmp_path / "edge_signs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "edge_signs" / name).write_text(text)
    return find_modules(tmp_path / "edge_signs")


def test_the_reader_finds_every_kind_of_import(toy):
    assert [i.target for i in imports_of("edge_signs.edge", toy)] == ["edge_signs.edge.live"]
    assert sorted(i.target for i in imports_of("edge_signs.edge.live", toy)) == ["edge_signs.config", "edge_signs.edge.display"]
    assert [i.target for i in imports_of("edge_signs.edge.display", toy)] == ["edge_signs.edge.live"]  # inside a function
    assert sorted(i.target for i in imports_of("edge_signs.trainer.evaluate", toy)) == ["edge_signs.config", "edge_signs.edge.live"]
    assert "edge_signs.trainer.evaluate" in [i.target for i in imports_of("edge_signs.edge.evaluate", toy)]
    assert resolve("edge_signs.config.LABELS", toy) == "edge_signs.config"


def test_the_rules_catch_what_they_are_about(toy):
    assert circles(graph(toy)) == [["edge_signs.edge.display", "edge_signs.edge.live"]]
    bad = {(i.module, i.target) for m in toy for i in imports_of(m, toy) if is_edge_or_shared(m) and is_trainer_or_tensorflow(i.target, toy)}
    assert bad == {("edge_signs.edge.evaluate", "edge_signs.trainer.evaluate")}  # cli.py is the composition root; the trainer may
    assert [(m, n) for m, _, n in function_lengths(toy) if n > MAX_FUNCTION_LINES] == [("edge_signs.long", 61)]
    assert module_lengths(toy)["edge_signs.long"] == 61


# -- the package ---------------------------------------------------------------------------------------------------


def test_no_import_circle():
    edges = graph(MODULES)
    found = [" <-> ".join(group) + ": " + "; ".join(f"{a} imports {b}" for a in group for b in sorted(edges[a] & set(group)))
             for group in circles(edges)]
    assert not found, "import circles among edge_signs modules:\n  " + "\n  ".join(found)


def test_edge_side_and_shared_core_never_import_the_trainer_or_tensorflow():
    bad = [f"{i.module} ({MODULES[i.module].relative_to(PACKAGE.parent)}:{i.line}) imports {i.target}"
           for module in MODULES if is_edge_or_shared(module)
           for i in imports_of(module, MODULES) if is_trainer_or_tensorflow(i.target, MODULES)]
    assert not bad, "the edge side or the shared core imports the trainer or TensorFlow:\n  " + "\n  ".join(bad)


def test_no_module_over_the_limit():
    long = [f"{module} ({MODULES[module].relative_to(PACKAGE.parent)}): {n} lines"
            for module, n in module_lengths(MODULES).items() if n > MAX_MODULE_LINES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n  " + "\n  ".join(long)


def test_no_function_over_the_limit():
    long = [f"{module}.{name}: {n} lines" for module, name, n in function_lengths(MODULES) if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(long)
