"""mcpdsl: one declarative language for scaling, carbon, zero-trust access and integrations.

    >>> import mcpdsl
    >>> project = mcpdsl.load("policies/")        # doctest: +SKIP
    >>> [d.code for d in mcpdsl.check("policies/")]  # doctest: +SKIP
    []

The facade imports heavy stages lazily so that `import mcpdsl` stays cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mcpdsl.diagnostics.model import CompileError, Diagnostic, Severity

if TYPE_CHECKING:
    from mcpdsl.engine import Engine
    from mcpdsl.ir.model import Project

__version__ = "0.1.0"

__all__ = [
    "CompileError",
    "Diagnostic",
    "Engine",
    "Severity",
    "__version__",
    "build",
    "check",
    "load",
]


def __getattr__(name: str) -> object:
    """Lazy exports: `mcpdsl.Engine` imports the engine on first use only."""
    if name == "Engine":
        from mcpdsl.engine import Engine

        return Engine
    raise AttributeError(f"module 'mcpdsl' has no attribute {name!r}")


def check(path: str | os.PathLike[str]) -> list[Diagnostic]:
    """Every diagnostic for a policy tree (errors, warnings, infos), sorted by location.

    Like `mcpdsl check`, this includes the z3 analyses (run only when the tree
    has no front-end error).
    """
    from mcpdsl.pipeline import InputError, compile_tree

    try:
        return compile_tree(path, analyze=True).diagnostics
    except InputError as exc:
        return [exc.diagnostic]


def load(path: str | os.PathLike[str]) -> Project:
    """The typed IR of a policy tree; raises `CompileError` when it has errors."""
    from mcpdsl.pipeline import InputError, compile_tree

    try:
        compilation = compile_tree(path)
    except InputError as exc:
        raise CompileError([exc.diagnostic]) from exc
    if compilation.project is None:
        raise CompileError(compilation.diagnostics)
    return compilation.project


def build(  # type: ignore[no-untyped-def]
    path: str | os.PathLike[str], out: str | os.PathLike[str] = "build", *, strict: bool = False
):
    """Compile a policy tree and write every target's artifacts atomically into `out`.

    Returns a `mcpdsl.builder.BuildResult` (its `build_diagnostics` say what the
    targets could not enforce as written); raises `CompileError` when the tree has
    errors, or under `strict` when a clause is not enforced, dropped or narrowed.
    """
    from mcpdsl.builder import build as run_build

    return run_build(path, out, strict=strict)
