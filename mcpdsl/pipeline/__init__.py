"""The compiler as a tuple of named stages.

    read(files), then STAGES = (parse, lower, resolve, typecheck, analyze)

`read` runs first and is not in `STAGES`: it is the one step that takes the file
list (and does I/O); every stage in `STAGES` takes only the `Compilation`.
Ordering: `parse` needs the decoded text of `read`; `lower` works per file and
needs only its syntax tree; `resolve` needs every file's unit (names cross
files); `typecheck` needs resolved names; `analyze` (z3, opt-in with
`compile_tree(path, analyze=True)`, which `mcpdsl check` does) needs a
typechecked project and runs only when the earlier stages found no error.
Stages accumulate diagnostics and never raise for user errors.  Per-stage
timings are keyed by stage name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mcpdsl._gc import gc_paused
from mcpdsl.diagnostics import Diagnostic, sort_diagnostics
from mcpdsl.ir import model as m
from mcpdsl.reader import (
    MAX_FILE_BYTES,
    SUFFIX,
    InputError,
    Refused,
    display_path,
    find_sources,
    read_source,
)
from mcpdsl.source import SourceFile, SourceMap

if TYPE_CHECKING:
    from mcpdsl.ir.jwks import JwksCheck

__all__ = ["SUFFIX", "Compilation", "InputError", "compile_tree", "find_files", "read"]


@dataclass
class Compilation:
    """Everything a compilation produced: the project, diagnostics, sources, timings."""

    root: Path
    sources: SourceMap = field(default_factory=SourceMap)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    units: list[m.FileUnit] = field(default_factory=list)
    project: m.Project | None = None
    timings: dict[str, float] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    parsed: list[object] = field(default_factory=list)
    analyze: bool = False  # run the z3 analyses (`mcpdsl check`); build/watch/eval skip them
    jwks: JwksCheck | None = None  # judges a `jwks file`'s bytes; None: computed each time

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


find_files = find_sources  # the historical name, used across the code base


def read(c: Compilation, files: list[Path]) -> None:
    """Read every candidate through the safe reader; refusals become diagnostics."""
    for file in files:
        display = display_path(c.root, file)
        try:
            c.raw[display] = read_source(c.root, file)
        except Refused as refused:
            c.diagnostics.append(refused.diagnostic)


def parse(c: Compilation) -> None:
    from mcpdsl.syntax.parser import decode, display_text, parse_source

    for display, data in c.raw.items():
        source, problems = decode(display, data)
        c.diagnostics.extend(problems)
        if source is None:  # shown in snippets only, with bad bytes replaced
            shown = display_text(data) if len(data) <= MAX_FILE_BYTES else ""
            c.sources.add(SourceFile(display, shown))
            continue
        c.sources.add(source)
        parsed = parse_source(source)
        c.diagnostics.extend(parsed.diagnostics)
        c.parsed.append(parsed)


def lower(c: Compilation) -> None:
    from mcpdsl.ir.lower import lower as lower_file

    for parsed in c.parsed:
        unit, diags = lower_file(parsed)  # type: ignore[arg-type]
        c.diagnostics.extend(diags)
        if unit is not None:
            c.units.append(unit)


def resolve(c: Compilation) -> None:
    from mcpdsl.ir.resolve import resolve as resolve_units

    project, diags = resolve_units(c.units, str(c.root), jwks=c.jwks)
    c.diagnostics.extend(diags)
    c.project = project


def typecheck(c: Compilation) -> None:
    from mcpdsl.ir.identity import check_identity
    from mcpdsl.ir.servers import check_servers
    from mcpdsl.ir.typecheck import typecheck as typecheck_project

    if c.project is not None:
        c.diagnostics.extend(typecheck_project(c.project))
        c.diagnostics.extend(check_identity(c.project, c.jwks))  # whole-tree: keys, SPIFFE ids
        c.diagnostics.extend(check_servers(c.project))  # one decision server per tree


def analyze(c: Compilation) -> None:
    if not c.analyze or c.project is None or c.has_errors:
        return
    from mcpdsl.analysis import analyze as analyze_project

    c.diagnostics.extend(analyze_project(c.project, c.sources).diagnostics)


STAGES: tuple[tuple[str, Callable[[Compilation], None]], ...] = (
    ("parse", parse),
    ("lower", lower),
    ("resolve", resolve),
    ("typecheck", typecheck),
    ("analyze", analyze),  # last: needs a typechecked, error-free project
)


def compile_tree(
    path: str | os.PathLike[str], *, analyze: bool = False, stored: bool = False
) -> Compilation:
    """Run the front end on a tree (or one file); raises InputError for unusable paths.

    `analyze=True` adds the z3 analyses (what `mcpdsl check` reports).
    `stored=True` (the command line) takes each unchanged file's `parse` and
    `lower` results from the user's cache directory (`mcpdsl.pipeline.disk_cache`),
    the verdict on each `jwks file` (`mcpdsl.pipeline.jwks_cache`) and the analyses'
    result of an unchanged tree; the result is the same, except that
    `Compilation.parsed` is empty.
    """
    root, files = find_files(Path(path))
    c = Compilation(root=root, analyze=analyze)
    if stored:
        from mcpdsl.pipeline.jwks_cache import StoredJwksCheck

        c.jwks = StoredJwksCheck()
    with gc_paused():
        _run_stages(c, files, stored=stored)
    return c


def _run_stages(c: Compilation, files: list[Path], *, stored: bool = False) -> None:
    start = time.perf_counter()
    read(c, files)
    c.timings["read"] = time.perf_counter() - start
    stages = STAGES
    if stored and [name for name, _ in STAGES[:2]] == ["parse", "lower"]:
        from mcpdsl.pipeline.disk_cache import run_per_file

        start = time.perf_counter()
        run_per_file(c)
        c.timings["parse+lower"] = time.perf_counter() - start
        stages = STAGES[2:]
    for name, stage in stages:
        if stored and name == "analyze":
            from mcpdsl.pipeline.disk_cache import run_analyze

            stage = run_analyze  # the same diagnostics, kept for an unchanged tree
        start = time.perf_counter()
        stage(c)
        c.timings[name] = time.perf_counter() - start
    c.diagnostics = sort_diagnostics(c.diagnostics)
    if c.has_errors:
        c.project = None
