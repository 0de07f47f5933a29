"""The import graph of the `mcpdsl` package, read from the source with `ast`.

Why a graph of its own: the layer rules in docs/architecture.md are only
rules if something checks them, and the checks must see what Python really
runs, so every `import` counts, including the ones inside functions (a lazy
import still makes a cycle at run time, it only postpones it) and including
the package `__init__` files an import runs on its way (`import a.b.c` runs
`a/b/__init__.py` first: a facade that imports its own heavy modules is an
edge too).  The root `mcpdsl/__init__.py` is the exception: Python runs it
before anything else in the package whatever is imported, so only an
explicit `import mcpdsl` / `from mcpdsl import x` counts as an edge to it.
Imports under `if TYPE_CHECKING:` never run and are not edges.

Run it as a script for the numbers (`python tests/import_graph.py`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = "mcpdsl"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / ROOT


def module_names(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> file, for every `.py` file of the package."""
    names: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_package(name: str, modules: Mapping[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _imported(node: ast.AST, module: str, is_pkg: bool) -> Iterable[tuple[str, tuple[str, ...]]]:
    """(module imported, names imported from it) for one import statement."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, ()
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        yield target, tuple(alias.name for alias in node.names)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def edges(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (see the module docstring)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _runtime_nodes(tree):
            for target, names in _imported(node, name, _is_package(name, modules)):
                if target != ROOT and not target.startswith(ROOT + "."):
                    continue
                found: list[str] = []
                # `from pkg import sub` imports the submodule `pkg.sub` when there is one.
                found.extend(f"{target}.{n}" for n in names if f"{target}.{n}" in modules)
                # `import a.b.c` runs a/__init__, a/b/__init__ and then c (root excluded).
                parts = target.split(".")
                for i in range(2, len(parts) + 1):
                    found.append(".".join(parts[:i]))
                if target == ROOT:
                    found.append(ROOT)
                graph[name].update(f for f in found if f in modules and f != name)
    return graph


def package_of(module: str) -> str:
    """The top-level package (or module) of `mcpdsl` a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                components.append(sorted(component))
    return components


@dataclass(frozen=True)
class Stats:
    modules: int
    edges: int
    cross_package_edges: int
    module_cycles: int  # strongly connected components of more than one module
    largest_component: int  # modules in the largest one
    package_cycles: int  # the same, on the graph of top-level packages


def package_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for source, targets in graph.items():
        packages.setdefault(package_of(source), set())
        for target in targets:
            if package_of(target) != package_of(source):
                packages[package_of(source)].add(package_of(target))
    return packages


def stats(graph: Mapping[str, set[str]]) -> Stats:
    components = [c for c in strongly_connected(graph) if len(c) > 1]
    packages = [c for c in strongly_connected(package_graph(graph)) if len(c) > 1]
    return Stats(
        modules=len(graph),
        edges=sum(len(t) for t in graph.values()),
        cross_package_edges=sum(
            1 for s, ts in graph.items() for t in ts if package_of(s) != package_of(t)
        ),
        module_cycles=len(components),
        largest_component=max((len(c) for c in components), default=1),
        package_cycles=len(packages),
    )


if __name__ == "__main__":
    g = edges(module_names())
    print(stats(g))
    for component in strongly_connected(g):
        if len(component) > 1:
            print("module cycle:", " ".join(component))
    for component in strongly_connected(package_graph(g)):
        if len(component) > 1:
            print("package cycle:", " ".join(component))
