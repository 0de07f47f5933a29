"""`mcpdsl watch`: rebuild on every change, reusing what did not change.

Two pieces:

* `FrontEndCache.compile(path)` runs the pipeline of `mcpdsl.pipeline` with a
  per-file cache: the per-file stages (`parse`, `lower`) run only for files
  whose bytes changed (keyed by path and sha256); their results are reused
  otherwise, and the cross-file stages (`resolve`, `typecheck`, and whatever
  follows them in `STAGES`) run on the whole project every time.  The result
  equals `compile_tree(path)` (tested).
* `Watcher` debounces file events (watchfiles), re-runs check + build, prints
  the diagnostics and the time of each rebuild, and keeps the last good
  artifacts: output is written only when the tree has no errors, and then
  atomically (`mcpdsl.builder.write_atomically`), so a broken edit never replaces
  a good build.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mcpdsl.compile import TARGETS
from mcpdsl.diagnostics import sort_diagnostics
from mcpdsl.pipeline import (
    STAGES,
    SUFFIX,
    Compilation,
    InputError,
    compile_tree,
    find_files,
    read,
)
from mcpdsl.source import SourceMap

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
        replace = replace or {}
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


@dataclass
class Rebuild:
    """What one rebuild did."""

    when: datetime
    ok: bool  # no errors (artifacts written, unless an internal error occurred)
    wrote: bool
    artifacts: int = 0
    errors: int = 0
    warnings: int = 0
    seconds: float = 0.0
    stats: CacheStats = field(default_factory=CacheStats)
    changed: tuple[str, ...] = ()
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # per stage and target, seconds


class Watcher:
    """Check + build `root` into `out` now and after every change to a `.mcp` file."""

    def __init__(
        self,
        root: str | Path,
        out: str | Path = "build",
        *,
        targets: tuple[str, ...] = TARGETS,
        echo: Callable[[str], None] = print,
        colour: bool = False,
    ) -> None:
        self.root = Path(root)
        self.out = Path(out)
        self.targets = targets
        self.echo = echo
        self.colour = colour
        self.cache = FrontEndCache(keep_parsed=False)
        self.good = False  # whether `out` holds artifacts written by this watcher
        self.history: list[Rebuild] = []

    def rebuild(self, changed: Iterable[str] = ()) -> Rebuild:
        from mcpdsl.builder import compile_artifacts, write_atomically
        from mcpdsl.diagnostics.render import render_human, summary_line

        when = datetime.now().astimezone()
        stamp = when.strftime("%H:%M:%S")
        changed = tuple(sorted(changed))
        if changed:
            self.echo(f"[{stamp}] changed: {', '.join(changed)}")
        start = time.perf_counter()
        keep = f"keeping the last good artifacts in {self.out}/" if self.good else "nothing written"
        try:
            compilation, stats = self.cache.compile(self.root)
        except InputError as exc:
            self.echo(render_human([exc.diagnostic], SourceMap(), colour=self.colour))
            result = Rebuild(when, ok=False, wrote=False, errors=1, changed=changed)
            result.message = f"[{stamp}] input error; {keep}"
            return self._done(result)
        diagnostics = compilation.diagnostics
        errors = sum(d.is_error for d in diagnostics)
        result = Rebuild(
            when,
            ok=errors == 0,
            wrote=False,
            errors=errors,
            warnings=len(diagnostics) - errors,
            stats=stats,
            changed=changed,
            timings=dict(compilation.timings),
        )
        if diagnostics:
            self.echo(render_human(diagnostics, compilation.sources, colour=self.colour))
            self.echo(summary_line(diagnostics))
        if errors:
            result.seconds = time.perf_counter() - start
            result.message = (
                f"[{stamp}] build failed ({errors} error{'s' * (errors != 1)}) in"
                f" {result.seconds * 1000:.0f} ms; {keep}"
            )
            return self._done(result)
        try:
            built = compile_artifacts(compilation, self.targets)
            artifacts = built.artifacts
            write_start = time.perf_counter()
            write_atomically(self.out, artifacts)
            result.timings = {**built.timings, "write": time.perf_counter() - write_start}
        except Exception as exc:  # a bug in a target, or an unwritable output: keep watching
            result.ok = False
            result.seconds = time.perf_counter() - start
            result.message = f"[{stamp}] internal error: {type(exc).__name__}: {exc}; {keep}"
            return self._done(result)
        self.good = True
        result.wrote = True
        result.artifacts = len(artifacts)
        result.seconds = time.perf_counter() - start
        result.message = (
            f"[{stamp}] rebuilt {len(artifacts)} artifacts into {self.out}/ in"
            f" {result.seconds * 1000:.0f} ms ({stats.compiled} file(s) compiled,"
            f" {stats.reused} reused)"
        )
        return self._done(result)

    def _done(self, result: Rebuild) -> Rebuild:
        self.echo(result.message)
        self.history.append(result)
        return result

    def run(
        self,
        *,
        debounce_ms: int = 50,
        stop_event: threading.Event | None = None,
        on_rebuild: Callable[[Rebuild], None] | None = None,
        force_polling: bool | None = None,
    ) -> None:
        """Build once, then after every debounced batch of `.mcp` changes until stopped.

        Stops when `stop_event` is set; Ctrl-C raises KeyboardInterrupt (the CLI
        turns it into a clean exit).
        """
        import watchfiles

        default_filter = watchfiles.DefaultFilter()
        out = self.out.resolve()

        def relevant(change: watchfiles.Change, path: str) -> bool:
            p = Path(path)
            return (
                path.endswith(SUFFIX)
                and default_filter(change, path)
                and out not in p.resolve().parents
            )

        first = self.rebuild()
        if on_rebuild:
            on_rebuild(first)
        watch_root = self.root if self.root.is_dir() else self.root.parent
        self.echo(f"watching {self.root} for changes to {SUFFIX} files (Ctrl-C to stop)")
        for changes in watchfiles.watch(
            watch_root,
            watch_filter=relevant,
            debounce=debounce_ms,
            step=min(50, max(debounce_ms, 1)),
            stop_event=stop_event,
            force_polling=force_polling,
        ):
            names = {self._display(path) for _, path in changes}
            result = self.rebuild(names)
            if on_rebuild:
                on_rebuild(result)

    def _display(self, path: str) -> str:
        base = self.root if self.root.is_dir() else self.root.parent
        try:
            return Path(path).resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            return path
