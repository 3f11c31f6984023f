"""Every module of the package imports on its own, and no modules import each other in a cycle.

The cycle check reads every import statement (function-level ones too: a lazy import is still a
dependency) and finds the strongly connected components of the module graph. A module may import its own
package's ``__init__`` implicitly; edges to an ancestor package are not counted.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import videoflex

ROOT = Path(videoflex.__file__).resolve().parent
PACKAGE = "videoflex"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """``module -> modules it imports`` (within the package; the most specific module a name resolves to)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph(module_files())) == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    # the check itself can fail: a two-module cycle through a function-level import is found
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    (tmp_path / "x.py").write_text("def f():\n    from videoflex.y import g\n")
    tree = ast.parse((tmp_path / "x.py").read_text())
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))


def test_shared_blocks_import_nothing_above_them():
    """``videoflex.nn`` (shared blocks) and ``videoflex.io``/``videoflex.vae`` never import a model family,
    the trainer, the CLI or evaluation."""
    graph = import_graph(module_files())
    upper = ("videoflex.tokenizers", "videoflex.generators", "videoflex.train", "videoflex.cli", "videoflex.eval",
             "videoflex.registry")
    for name, targets in graph.items():
        if name.startswith(("videoflex.nn", "videoflex.io", "videoflex.vae", "videoflex.utils")):
            bad = sorted(t for t in targets if t.startswith(upper))
            assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("name", sorted(module_files()))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_importing_the_package_has_no_side_effects_on_stdout():
    out = subprocess.run([sys.executable, "-c", "import videoflex, videoflex.cli.main"], capture_output=True,
                         text=True, check=True)
    assert out.stdout == "" and out.stderr == ""
