"""`mcpdsl watch`: rebuild on every change, reusing what did not change.

`Watcher` debounces file events (watchfiles), re-runs check + build through
`mcpdsl.pipeline.cache.FrontEndCache` (parse and lower run only for the files
whose bytes changed), prints the diagnostics and the time of each rebuild, and
keeps the last good artifacts: output is written only when the tree has no
errors, and then atomically (`mcpdsl.builder.artifacts.write_atomically`), so a
broken edit never replaces a good build; `out` obeys the output-directory
policy of `mcpdsl.outdir`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mcpdsl.compile import TARGETS
from mcpdsl.pipeline import (
    SUFFIX,
    InputError,
)
from mcpdsl.pipeline.cache import CacheStats, FrontEndCache
from mcpdsl.source import SourceMap


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
        force: bool = False,
    ) -> None:
        self.root = Path(root)
        self.out = Path(out)
        self.force = force  # only for the first write: afterwards `out` is our build
        self.targets = targets
        self.echo = echo
        self.colour = colour
        self.cache = FrontEndCache(keep_parsed=False)
        self.good = False  # whether `out` holds artifacts written by this watcher
        self.history: list[Rebuild] = []

    def rebuild(self, changed: Iterable[str] = ()) -> Rebuild:
        from mcpdsl.builder.artifacts import compile_artifacts, write_atomically
        from mcpdsl.diagnostics import Severity
        from mcpdsl.diagnostics.render import render_human, summary_line
        from mcpdsl.outdir import OutputError

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
            findings = [d for d in built.build_diagnostics if d.severity is not Severity.INFO]
            if findings:  # what the targets drop or narrow (B01xx), as `build` reports it
                self.echo(render_human(findings, compilation.sources, colour=self.colour))
            artifacts = built.artifacts
            write_start = time.perf_counter()
            write_atomically(
                self.out, artifacts, sources=(self.root,), force=self.force and not self.good
            )
            result.timings = {**built.timings, "write": time.perf_counter() - write_start}
        except OutputError as exc:  # the output policy refused `out` (E08xx): say why
            result.ok = False
            result.seconds = time.perf_counter() - start
            self.echo(render_human([exc.diagnostic], SourceMap(), colour=self.colour))
            result.message = f"[{stamp}] output refused ({exc.diagnostic.code}); {keep}"
            return self._done(result)
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
