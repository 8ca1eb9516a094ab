"""The package's layout: library below, verbs on top, and no import cycle anywhere in argse/.

Every import of an argse module is read from the source (module level and inside functions; only
``if TYPE_CHECKING:`` blocks are left out, as they never run), so a cycle that only a late import
hides is found too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {
    "argse.train_experts",
    "argse.train_gating",
    "argse.evaluate",
    "argse.predict",
    "argse.reproduce",
    "argse.stages.__main__",
    "argse.table2",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in (ROOT / "argse").rglob("*.py")}


def _imports(tree: ast.AST) -> set[str]:
    found, todo = set(), [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        todo += list(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES}


GRAPH = {m: _imports(ast.parse(p.read_text())) - {m} for m, p in MODULES.items()}


def test_no_library_module_imports_an_entry_point():
    library = [m for m in GRAPH if m not in ENTRY_POINTS and not m.endswith("__main__")]
    edges = sorted(f"{m} -> {n}" for m in library for n in GRAPH[m] & ENTRY_POINTS)
    assert not edges


def test_entry_points_import_no_entry_point():
    edges = sorted(f"{m} -> {n}" for m in ENTRY_POINTS for n in GRAPH[m] & ENTRY_POINTS)
    assert not edges


# The layers, lowest first: a module imports only from its own layer or one below (never upward), and the
# top of argse/ holds the entry points and their command-line plumbing.
LAYERS = [
    "argse.core",
    "argse.config",
    "argse.data",
    "argse.training",
    "argse.experts",
    "argse.selective",
    "argse.reports",
    "argse.gating",
    "argse.stages",
    "argse.inference",
    "argse.papers",
]
TOP = len(LAYERS)


def layer(module: str) -> int:
    """A module's layer: ``argse`` itself (only its version) is the lowest, and a package's ``__main__`` is a command."""
    if module == "argse":
        return 0
    if module.endswith("__main__"):
        return TOP
    return next((i for i, p in enumerate(LAYERS) if module == p or module.startswith(p + ".")), TOP)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = sorted(f"{m} -> {n}" for m in GRAPH for n in GRAPH[m] if layer(n) > layer(m))
    assert not upward


def test_the_layer_check_finds_an_upward_import():
    assert layer("argse.data.splits") < layer("argse.stages.run") < layer("argse.train_experts")


def test_the_top_holds_the_entry_points_and_little_else():
    top = sorted(p.stem for p in (ROOT / "argse").glob("*.py"))
    packages = sorted(p.parent.name for p in (ROOT / "argse").glob("*/__init__.py"))
    assert len(top) <= 16 and len(packages) >= 5
    assert {m.removeprefix("argse.") for m in ENTRY_POINTS if m.count(".") == 1} <= set(top)
    assert set(top) - {m.removeprefix("argse.") for m in ENTRY_POINTS} == {"__init__", "cli"}
    assert {p.removeprefix("argse.") for p in LAYERS} <= set(packages)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_500_lines(module):
    assert len(MODULES[module].read_text().splitlines()) <= 500


# The method knows nothing of the run store: no module of experts, training, gating, the rejectors or their sweep
# imports the stages layer (store, ids, stage files) or the side-file validation (the report and rules files and the
# pages of argse.reports are files, not method); only the training loop writes files, its
# own checkpoints, through argse.core.storage's atomic write (DESIGN: a checkpoint every epoch, atomic).
METHOD = (
    "argse.experts",
    "argse.training",
    "argse.gating",
    "argse.selective",
)
STORE = ("argse.stages", "argse.core.storage", "argse.core.records")


def test_the_method_imports_no_store_module():
    method = [m for m in GRAPH if m.startswith(METHOD)]
    edges = sorted(f"{m} -> {n}" for m in method for n in GRAPH[m] if n.startswith(STORE))
    # One known exception: the checkpoint file format reads and writes its safetensors files itself.
    assert edges == ["argse.training.checkpoints -> argse.core.storage"]


def test_the_store_check_finds_an_edge():
    graph = {"argse.gating.x": {"argse.stages.store"}}
    assert [f"{m} -> {n}" for m in graph if m.startswith(METHOD) for n in graph[m] if n.startswith(STORE)]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_argse():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("folder", ["benchmarks", "studies"])
def test_benchmarks_and_studies_import_no_test_module(folder):
    users = [p.name for p in (ROOT / folder).rglob("*.py") if "tests" in {m.split(".")[0] for m in _all(p)}]
    assert not users


def _all(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_docs_name_modules_that_exist():
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    named = {m for page in pages for m in re.findall(r"argse/[\w/]+\.py", page.read_text())}
    assert named and not sorted(m for m in named if not (ROOT / m).is_file())


def test_the_wheel_lists_every_package():
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module_name(p) for p in (ROOT / "argse").rglob("__init__.py")}
    assert packages and packages <= listed
