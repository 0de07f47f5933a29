"""mcpdsl: one declarative language for scaling, carbon, zero-trust access and integrations.

    >>> import mcpdsl
    >>> project = mcpdsl.load("policies/")        # doctest: +SKIP
    >>> [d.code for d in mcpdsl.check("policies/")]  # doctest: +SKIP
    []

The facade imports everything lazily so that `import mcpdsl` stays cheap: even
the diagnostic model is imported on first use, since it needs pydantic, which
`mcpdsl --version` and `--help` (and `python -m mcpdsl`, which imports this
package first) do not.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mcpdsl._version import __version__

if TYPE_CHECKING:
    from mcpdsl.diagnostics.model import CompileError, Diagnostic, Severity
    from mcpdsl.engine import Engine
    from mcpdsl.ir.model import Project

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


#: Lazy exports: name -> module that defines it, imported on first use.
_LAZY = {
    "CompileError": "mcpdsl.diagnostics.model",
    "Diagnostic": "mcpdsl.diagnostics.model",
    "Severity": "mcpdsl.diagnostics.model",
    "Engine": "mcpdsl.engine",
}


def __getattr__(name: str) -> object:
    """Lazy exports: `mcpdsl.Engine`, `mcpdsl.Diagnostic`, ... import their module on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mcpdsl' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
    from mcpdsl.diagnostics.model import CompileError
    from mcpdsl.pipeline import InputError, compile_tree

    try:
        compilation = compile_tree(path)
    except InputError as exc:
        raise CompileError([exc.diagnostic]) from exc
    if compilation.project is None:
        raise CompileError(compilation.diagnostics)
    return compilation.project


def build(  # type: ignore[no-untyped-def]
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] = "build",
    *,
    analyze: bool = True,
    force: bool = False,
    strict: bool = False,
):
    """Compile a policy tree and write every target's artifacts atomically into `out`.

    Returns a `mcpdsl.builder.artifacts.BuildResult`; raises `CompileError` when the tree has
    errors, the z3 analyses included (as `mcpdsl build`; `analyze=False` skips them),
    and `mcpdsl.outdir.OutputError` (a `CompileError`, E08xx) when `out` may not be
    replaced (docs/output.md; `force=True` overrides only a non-empty foreign directory).
    Its `build_diagnostics` say what the targets could not enforce as written; under
    `strict` a clause that is not enforced, dropped or narrowed raises `CompileError`.
    """
    from mcpdsl.builder.artifacts import build as run_build

    return run_build(path, out, analyze=analyze, force=force, strict=strict)
