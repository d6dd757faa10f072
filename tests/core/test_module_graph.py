"""The import graph of ``binder``: acyclic, and the core does not depend on the plugins.

Every ``import binder...`` and ``from binder... import ...`` of every module under
``binder/`` counts, wherever it is written: at the top, under ``if TYPE_CHECKING:`` and
inside functions.  A type-only or a lazy import still ties two modules together (a
reader, a type checker and the next refactor see the dependency), so neither may close
a cycle.

An import of ``binder.a.b`` is one edge, to ``binder.a.b``: the parent packages Python
imports first (``binder``, ``binder.a``) are not counted, or every package whose
``__init__`` re-exports its submodules would be a cycle with each of them.
``from binder.a import b`` is an edge to the submodule ``binder.a.b`` when there is
one, else to ``binder.a``.  Imports by name at run time (``importlib``) are not seen.
"""

from __future__ import annotations

import ast
import itertools
import textwrap
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

import binder

ROOT = Path(binder.__file__).resolve().parent
PLUGINS = "binders"
#: The modules that formed one import cycle before the cycle was broken.
ONCE_CYCLIC = (
    "binder.app",
    "binder.config",
    "binder.hookspecs",
    "binder.plugins",
    "binder.resolve",
    "binder.runtime",
)

Edges = Mapping[str, Mapping[str, int]]


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: Collection[str]) -> Iterator[tuple[str, int]]:
    """Every module the module ``name`` (at ``path``) imports, with the line.

    ``known`` (the package's modules) tells a submodule from a name in a module.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                yield (submodule if submodule in known else module), node.lineno


def graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """``module -> {module of the package it imports: first line}``."""
    known = modules(root)
    edges: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        targets = edges[name] = {}
        for target, line in imported(name, path, known):
            if target in known and target != name:
                targets.setdefault(target, line)
    return edges


def cycles(edges: Edges) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def a_cycle(component: list[str], edges: Edges) -> list[str]:
    """A shortest path from the component's first module back to it."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(edges[node]):
            if target == start:
                return [*paths[node], start]
            if target in members and target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def describe(cycle: list[str], edges: Edges) -> str:
    steps = [f"{a} (line {edges[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join([*steps, cycle[-1]])


# --------------------------------------------------------------------------- the checks


def test_binder_modules_import_each_other_without_cycles() -> None:
    edges = graph()
    assert set(ONCE_CYCLIC) <= set(edges), "the graph is of the binder package"
    found = [
        f"{len(component)} modules in a cycle, e.g. {describe(a_cycle(component, edges), edges)}"
        f"; all: {', '.join(component)}"
        for component in cycles(edges)
    ]
    assert found == [], "import cycles:\n" + "\n".join(found)


def test_the_core_does_not_import_the_binder_plugins() -> None:
    known = modules()
    offenders = [
        f"{name} (line {line}) imports {target}"
        for name, path in known.items()
        for target, line in imported(name, path, known)
        if target == PLUGINS or target.startswith(f"{PLUGINS}.")
    ]
    assert offenders == []


# --------------------------------------------------------------------------- the tools


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root / "pkg"


def test_every_kind_of_import_is_an_edge(tmp_path: Path) -> None:
    root = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",
            "pkg/a.py": """\
                from typing import TYPE_CHECKING
                from pkg import b
                if TYPE_CHECKING:
                    from pkg.sub.c import C
                def later():
                    import pkg.d
                A = 1
            """,
            "pkg/b.py": "from . import d\nfrom .sub import c\n",
            "pkg/d.py": "from pkg.sub import NAME\n",
            "pkg/sub/__init__.py": "NAME = 1\n",
            "pkg/sub/c.py": "from .. import d\nimport os\n",
        },
    )
    assert graph(root) == {
        "pkg": {"pkg.a": 1},
        "pkg.a": {"pkg.b": 2, "pkg.sub.c": 4, "pkg.d": 6},
        "pkg.b": {"pkg.d": 1, "pkg.sub.c": 2},
        "pkg.d": {"pkg.sub": 1},
        "pkg.sub": {},
        "pkg.sub.c": {"pkg.d": 1},
    }
    assert cycles(graph(root)) == []


def test_a_cycle_is_found_and_described() -> None:
    edges = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "b": 5}, "d": {"a": 4}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert a_cycle(["a", "b", "c"], edges) == ["a", "b", "c", "a"]
    assert describe(["a", "b", "c", "a"], edges) == "a (line 1) -> b (line 2) -> c (line 3) -> a"
