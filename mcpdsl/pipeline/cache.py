"""The front end with a per-file cache: what `mcpdsl watch` and a reloading engine share.

`FrontEndCache.compile(path)` runs the pipeline of `mcpdsl.pipeline` with a
per-file cache: the per-file stages (`parse`, `lower`) run only for files
whose bytes changed (keyed by path and sha256); their results are reused
otherwise, and the cross-file stages (`resolve`, `typecheck`, and whatever
follows them in `STAGES`) run on the whole project every time, `resolve`
re-binding only the files whose result can have changed (`ResolveMemo`).  The result
equals `compile_tree(path)` (tested).  It lives beside the pipeline because it
is the pipeline, cached: the build watcher (`mcpdsl.builder.watch`) and the
engine's tree source (`mcpdsl.engine.reload`) both use it without importing
each other.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mcpdsl._gc import gc_paused
from mcpdsl.diagnostics import sort_diagnostics
from mcpdsl.pipeline import STAGES, Compilation, compile_tree, find_files, read

if TYPE_CHECKING:
    from mcpdsl.ir.resolve import ResolveMemo

#: The stages that look at one file only; they must come first in `STAGES`.
PER_FILE_STAGES = ("parse", "lower")


@dataclass
class _Cached:
    sha256: str
    unit: Compilation  # a one-file compilation after the per-file stages


@dataclass
class CacheStats:
    compiled: int = 0  # files parsed and lowered this time
    reused: int = 0  # files taken from the cache


class FrontEndCache:
    """The front end with parse/lower results cached per file content.

    `keep_parsed=False` drops each file's syntax tree once it is lowered (only
    `lower` reads it): the cache then holds little more than the IR the project
    shares anyway.  The embedded engine's reload uses that; `Compilation.parsed`
    is then empty.
    """

    def __init__(self, *, keep_parsed: bool = True) -> None:
        self._files: dict[str, _Cached] = {}
        self.keep_parsed = keep_parsed
        names = tuple(name for name, _ in STAGES)
        # If the pipeline is ever reordered so that a cross-file stage runs before a
        # per-file one, caching would be wrong: fall back to the uncached pipeline.
        self.enabled = names[: len(PER_FILE_STAGES)] == PER_FILE_STAGES
        self._resolve_memo: ResolveMemo | None = None

    def _resolve(self, c: Compilation) -> None:
        """The `resolve` stage, re-binding only the files whose result can have changed."""
        from mcpdsl.ir.resolve import ResolveMemo, resolve

        if self._resolve_memo is None:
            self._resolve_memo = ResolveMemo()
        project, diags = resolve(c.units, str(c.root), self._resolve_memo)
        c.diagnostics.extend(diags)
        c.project = project

    def compile(self, path: str | Path) -> tuple[Compilation, CacheStats]:
        if not self.enabled:
            c = compile_tree(path)
            return c, CacheStats(compiled=len(c.raw))
        root, files = find_files(Path(path))
        c = Compilation(root=root)
        start = time.perf_counter()
        read(c, files)
        c.timings["read"] = time.perf_counter() - start
        return self.compile_read(c)

    def compile_read(
        self,
        c: Compilation,
        *,
        replace: Mapping[str, Callable[[Compilation], None]] | None = None,
    ) -> tuple[Compilation, CacheStats]:
        """The stages after `read`, on a compilation whose `raw` bytes are already set.

        Callers that hold file contents themselves (the language server's unsaved
        buffers) fill `c.raw` and come here, so that they share this cache.
        `replace` swaps cross-file stages by name for equivalent ones (the language
        server's typecheck that reuses the results of unchanged files).
        """
        with gc_paused():  # as `compile_tree` does, for the same reason
            return self._compile_read(c, {"resolve": self._resolve, **(replace or {})})

    def _compile_read(
        self, c: Compilation, replace: Mapping[str, Callable[[Compilation], None]]
    ) -> tuple[Compilation, CacheStats]:
        root = c.root
        if not self.enabled:
            for _name, stage in STAGES:
                stage(c)
            c.diagnostics = sort_diagnostics(c.diagnostics)
            if c.has_errors:
                c.project = None
            return c, CacheStats(compiled=len(c.raw))
        stats = CacheStats()
        start = time.perf_counter()
        per_file = dict(STAGES)
        for display, data in c.raw.items():
            digest = hashlib.sha256(data).hexdigest()
            cached = self._files.get(display)
            if cached is None or cached.sha256 != digest:
                unit = Compilation(root=root, raw={display: data})
                for name in PER_FILE_STAGES:
                    per_file[name](unit)
                if not self.keep_parsed:
                    unit.parsed.clear()
                cached = self._files[display] = _Cached(digest, unit)
                stats.compiled += 1
            else:
                stats.reused += 1
            for source in cached.unit.sources:
                c.sources.add(source)
            c.diagnostics.extend(cached.unit.diagnostics)
            c.parsed.extend(cached.unit.parsed)
            c.units.extend(cached.unit.units)
        for gone in set(self._files) - set(c.raw):
            del self._files[gone]
        c.timings["+".join(PER_FILE_STAGES)] = time.perf_counter() - start
        for name, stage in STAGES[len(PER_FILE_STAGES) :]:
            start = time.perf_counter()
            replace.get(name, stage)(c)
            c.timings[name] = time.perf_counter() - start
        c.diagnostics = sort_diagnostics(c.diagnostics)
        if c.has_errors:
            c.project = None
        return c, stats
