"""The layers of docs/design.md hold: import-linter's contracts (pyproject.toml)
are kept, no module imports itself back through others, and only the tools
import the package root.  grimp (import-linter's graph) sees function-local
imports too.  Skipped without import-linter (the ``lint`` extra; CI has it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

grimp = pytest.importorskip("grimp", reason="import-linter is not installed "
                                            "(pip install -e '.[lint]')")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the tools at the top of the layers, which may import the package root
TOOLS = {"numbaconv.cli", "numbaconv.warmup", "numbaconv.bench.runner", "numbaconv.bench.loop"}


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("numbaconv")


def _cycles(graph):
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    adjacent = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in adjacent[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(adjacent):
        if module not in index:
            visit(module)
    return found


def test_the_import_contracts_are_kept():
    result = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import "
                             "lint_imports_command; sys.exit(lint_imports_command())"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    # the finder itself, on a graph with one cycle a -> b -> c -> a
    fake = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c", "p.d"):
        fake.add_module(module)
    for importer, imported in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.d", "p.a")):
        fake.add_import(importer=importer, imported=imported)
    assert _cycles(fake) == [["p.a", "p.b", "p.c"]]


def test_only_the_tools_import_the_package_root(graph):
    assert set(graph.find_modules_that_directly_import("numbaconv")) <= TOOLS
