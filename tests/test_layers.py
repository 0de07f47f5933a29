"""The layer rules of docs/architecture.md, checked on the real import graph.

`LAYERS` is the architecture as data: lowest first, a package may import only
packages of strictly lower layers (never its own layer, never a higher one),
so there can be no cycle across packages.  A new top-level package or module
must be given a layer here, which is the moment to decide what it may import.
The graph counts imports inside functions and the package `__init__` files an
import runs (tests/import_graph.py says why).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from import_graph import (
    edges,
    module_names,
    package_graph,
    package_of,
    strongly_connected,
)

#: Lowest first.  Packages of one layer do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("source", "resources", "_version", "_gc", "cachedir"),  # leaves: spans, packaged files, ...
    ("diagnostics",),  # coded diagnostics and their rendering
    ("outdir", "reader"),  # the output-directory policy; safe source reads
    ("syntax",),  # the lark parser
    ("ir",),  # lowering, resolution, type checking; globs and path semantics
    ("evaluate", "optimize", "fmt"),  # pure evaluator, OR-Tools planning, formatter
    ("analysis", "compile"),  # z3 analyses (confirmed by the evaluator), target compilers
    ("simulate",),  # `mcpdsl simulate`: load traces through the HPA, scheduler and nodes
    ("pipeline",),  # the front end as stages (+ its per-file cache), analyses included
    ("builder",),  # artifacts on disk, watch mode
    ("trust",),  # signing and verifying builds
    ("engine",),  # the evaluator's host: sources, reload, watch, decision log
    ("serve",),  # the decision server: gRPC ext_authz, OPA Data API, metrics, shared store
    ("lsp",),  # the language server: the front end, analyses and formatter behind LSP
    ("cli",),  # one module per subcommand
    ("mcpdsl", "__main__"),  # the public facade (mcpdsl/__init__.py), `python -m mcpdsl`
)

#: Stricter than the layer order: the only packages these may import.
ONLY: dict[str, frozenset[str]] = {
    "evaluate": frozenset({"ir", "source", "diagnostics"}),
}

#: What `import mcpdsl.evaluate...` must never load (solvers, watchers, templates).
HEAVY = ("z3", "ortools", "watchfiles", "jinja2")

RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every cross-package edge against `LAYERS` / `ONLY`, as `module -> module: why`."""
    found = []
    for source in sorted(graph):
        for target in sorted(graph[source]):
            p, q = package_of(source), package_of(target)
            if p == q:
                continue
            if p not in RANK or q not in RANK:
                found.append(f"{source} -> {target}: `{p if p not in RANK else q}` has no layer")
            elif RANK[q] >= RANK[p]:
                found.append(
                    f"{source} -> {target}: `{p}` (layer {RANK[p]}) may not import"
                    f" `{q}` (layer {RANK[q]})"
                )
            elif p in ONLY and q not in ONLY[p]:
                allowed = ", ".join(sorted(ONLY[p]))
                found.append(f"{source} -> {target}: `{p}` may import only {allowed}")
    return found


def package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    return [c for c in strongly_connected(package_graph(graph)) if len(c) > 1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return edges(module_names())


def test_every_import_goes_down_the_layers(graph: dict[str, set[str]]) -> None:
    bad = violations(graph)
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_cycle_across_packages(graph: dict[str, set[str]]) -> None:
    cycles = package_cycles(graph)
    detail = [
        f"{' <-> '.join(c)}: "
        + ", ".join(
            f"{s} -> {t}"
            for s in sorted(graph)
            for t in sorted(graph[s])
            if package_of(s) in c and package_of(t) in c and package_of(s) != package_of(t)
        )
        for c in cycles
    ]
    assert not cycles, "cycles across packages:\n" + "\n".join(detail)


def test_every_package_has_a_layer(graph: dict[str, set[str]]) -> None:
    packages = {package_of(m) for m in graph}
    assert packages <= set(RANK), f"give these a layer in LAYERS: {sorted(packages - set(RANK))}"
    assert set(RANK) <= packages, f"no such package: {sorted(set(RANK) - packages)}"


def _fake_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "mcpdsl" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "mcpdsl"


def test_the_checker_sees_lazy_imports_and_facade_cycles(tmp_path: Path) -> None:
    """The failure this test exists for, in miniature: `ir.x` imports `evaluate.y`
    inside a function, which runs `evaluate/__init__`, which imports `ir.x`."""
    package = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "ir/__init__.py": "",
            "ir/x.py": "def f():\n    from mcpdsl.evaluate.y import g\n",
            "evaluate/__init__.py": "from mcpdsl.evaluate import y\n",
            "evaluate/y.py": "from mcpdsl.ir import x\nfrom typing import TYPE_CHECKING\n",
        },
    )
    fake = edges(module_names(package))
    assert "mcpdsl.evaluate" in fake["mcpdsl.ir.x"]  # the facade the import runs
    assert package_cycles(fake) == [["evaluate", "ir"]]
    ir, evaluate = RANK["ir"], RANK["evaluate"]
    assert violations(fake) == [
        f"mcpdsl.ir.x -> mcpdsl.evaluate: `ir` (layer {ir}) may not import `evaluate` "
        f"(layer {evaluate})",
        f"mcpdsl.ir.x -> mcpdsl.evaluate.y: `ir` (layer {ir}) may not import `evaluate` "
        f"(layer {evaluate})",
    ]


def test_type_checking_imports_and_relative_imports(tmp_path: Path) -> None:
    package = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "ir/__init__.py": "",
            "ir/x.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from mcpdsl.engine import Engine\n"
                "from . import y\n"
            ),
            "ir/y.py": "from ..evaluate import z\n",
            "engine/__init__.py": "",
            "evaluate/__init__.py": "",
            "evaluate/z.py": "",
        },
    )
    fake = edges(module_names(package))
    assert fake["mcpdsl.ir.x"] == {"mcpdsl.ir", "mcpdsl.ir.y"}  # TYPE_CHECKING never runs
    assert fake["mcpdsl.ir.y"] == {"mcpdsl.evaluate", "mcpdsl.evaluate.z"}
    assert any(
        f"`ir` (layer {RANK['ir']}) may not import `evaluate`" in v for v in violations(fake)
    )


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_evaluator_loads_no_solver_watcher_or_template_engine() -> None:
    modules = sorted(m for m in module_names() if package_of(m) == "evaluate")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n    importlib.import_module(name)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    assert _run(code).strip() == "[]"


def test_the_public_build_function_survives_importing_every_module() -> None:
    """`mcpdsl.build` is a function of the facade; a submodule of that name would replace it."""
    code = (
        "import importlib, inspect, mcpdsl\n"
        f"for name in {sorted(module_names())!r}:\n"
        "    if name != 'mcpdsl.__main__':\n        importlib.import_module(name)\n"
        "print(inspect.isfunction(mcpdsl.build), mcpdsl.Engine.__name__, mcpdsl.__version__)\n"
    )
    import mcpdsl

    assert _run(code).split() == ["True", "Engine", mcpdsl.__version__]
