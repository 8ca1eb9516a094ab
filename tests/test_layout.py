"""The package's layout: library below, verbs on top, and no import cycle anywhere in argse/.

Every import of an argse module is read from the source (module level and inside functions; only
``if TYPE_CHECKING:`` blocks are left out, as they never run), so a cycle that only a late import
hides is found too.
"""

from __future__ import annotations

import ast
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


# The method knows nothing of the run store: no module of experts, training, gating or the rejectors imports the
# stages layer (store, ids, stage files) or the side-file validation; only the training loop writes files, its
# own checkpoints, through argse.storage's atomic write (DESIGN: a checkpoint every epoch, atomic).
METHOD = ("argse.experts", "argse.training", "argse.gating", "argse.selective")
STORE = ("argse.stages", "argse.storage", "argse.records")


def test_the_method_imports_no_store_module():
    method = [m for m in GRAPH if m.startswith(METHOD)]
    edges = sorted(f"{m} -> {n}" for m in method for n in GRAPH[m] if n.startswith(STORE))
    assert edges == ["argse.training.checkpoints -> argse.storage", "argse.training.loop -> argse.storage"]


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
