"""Static analysis: what `mcpdsl check` proves about a tree, with z3 (ARCHITECTURE.md §1).

    ANALYSES = (rules, routes, scaling, capacity, carbon)

Each analysis is one module exporting one function named after it, taking
the shared `Analysis` context and appending diagnostics (codes `A01xx`,
docs/analysis.md).  `WANTS` says, from the IR alone, whether an analysis has
anything to look at, so that a tree without policies, gateways or pools never
imports z3.  To add an analysis: write `mcpdsl/analysis/NAME.py` with
`def NAME(a: Analysis) -> None`, add `NAME` to `ANALYSES` and a `WANTS`
entry, give its findings new `A01xx` codes in `mcpdsl/diagnostics/codes.py`
and planted-defect cases in `tests/analysis/cases/`.

Findings about requests carry a witness: a request, confirmed by the real
engine (`mcpdsl.analysis.witness`), shown as JSON in a `witness:` note.
`mcpdsl diff` (`mcpdsl.analysis.diff`) uses the same encoder on two trees.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcpdsl.diagnostics import Diagnostic, Label, make
from mcpdsl.ir import model as m
from mcpdsl.source import SourceMap, Span

if TYPE_CHECKING:
    from mcpdsl.analysis.encode import Encoder, F, Linear, Outcome
    from mcpdsl.analysis.witness import Confirmer

ANALYSES: tuple[str, ...] = ("rules", "routes", "scaling", "capacity", "carbon")

WANTS: dict[str, Callable[[m.Project], bool]] = {
    "rules": lambda p: any(x.rules or x.risk or x.requires for x in p.policies),
    "routes": lambda p: any(len(g.routes) > 1 for g in p.gateways),
    "scaling": lambda p: bool(p.scales),
    "capacity": lambda p: bool(p.pools),
    "carbon": lambda p: bool(p.carbons),
}


class WitnessCrash(RuntimeError):
    """The engine raised while confirming a witness: an internal error, not a finding.

    Declared here rather than in `witness` so that `mcpdsl check` can catch it
    without importing the evaluator when the analyses' result comes from the cache.
    Carries the question asked (`what`), the request and the engine's exception
    (also `__cause__`), so the report names everything needed to reproduce it.
    """

    def __init__(self, what: str, request: dict[str, Any], error: BaseException) -> None:
        self.what = what
        self.request = request
        self.error = error
        super().__init__(
            f"the engine crashed confirming a witness ({what}): "
            f"{type(error).__name__}: {error}; request: {_shown(request)}"
        )


def _shown(request: dict[str, Any]) -> str:
    """The request as JSON when it is JSON-like, else its repr (a crash report must not fail)."""
    from mcpdsl.analysis.witness import to_json

    try:
        return to_json(request)
    except (TypeError, ValueError):
        return repr(request)


@dataclass
class Options:
    """Solver limits per query: wall clock (ms) and z3's deterministic resource limit."""

    timeout_ms: int = 2000
    rlimit: int = 20_000_000


def options_from_env(environ: Mapping[str, str] | None = None) -> Options:
    """The default options, with `MCPDSL_ANALYSIS_TIMEOUT_MS` when it is a number.

    Separate from `analyze` so that a cache of its results can put the very
    options it would run with into its key without importing z3.
    """
    import os

    options = Options()
    env = (os.environ if environ is None else environ).get("MCPDSL_ANALYSIS_TIMEOUT_MS")
    if env and env.isdigit():
        options.timeout_ms = int(env)
    return options


@dataclass
class Tally:
    """Solver checks that gave up (timeout, resource limit, incompleteness), counted.

    A result computed while some check gave up may differ from run to run (the
    wall-clock limit depends on the machine), even when no diagnostic says so:
    a nicer witness that was not found, a bound not tightened.  Only results
    with a zero count are definitive (what `Analysis.definitive` tells a cache).
    """

    gave_up: int = 0


@dataclass
class Analysis:
    """What every analysis shares: the project, its sources, the solver and the engine."""

    project: m.Project
    sources: SourceMap | None = None
    options: Options = field(default_factory=Options)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)  # witnesses the engine rejected
    timings: dict[str, float] = field(default_factory=dict)
    _encoder: Encoder | None = None
    _confirmer: Confirmer | None = None
    _unknown: set[Any] = field(default_factory=set)
    tally: Tally = field(default_factory=Tally)  # checks outside the encoder (`Linear`)

    @property
    def definitive(self) -> bool:
        """Whether every solver check answered and every witness was confirmed.

        Then the diagnostics depend only on the inputs (the IR, the sources, the
        data files of `inputs`, the options and the code), not on how fast the
        machine was: what a cache may keep.
        """
        encoder_gave_up = self._encoder.stats.gave_up if self._encoder is not None else 0
        return encoder_gave_up == 0 and self.tally.gave_up == 0 and not self.unconfirmed

    def linear(self) -> Linear:
        """A linear-arithmetic problem with this analysis's limits; its give-ups are tallied."""
        from mcpdsl.analysis.encode import Linear

        return Linear(timeout_ms=self.options.timeout_ms, tally=self.tally)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from mcpdsl.analysis.encode import Encoder

            self._encoder = Encoder(
                [self.project], timeout_ms=self.options.timeout_ms, rlimit=self.options.rlimit
            )
        return self._encoder

    @property
    def confirmer(self) -> Confirmer:
        if self._confirmer is None:
            from mcpdsl.analysis.witness import Confirmer

            self._confirmer = Confirmer(self.project)
        return self._confirmer

    def report(
        self,
        code: str,
        message: str,
        span: Span | None,
        *,
        label: str = "",
        help: str | None = None,
        notes: Iterable[str] = (),
        secondary: Iterable[tuple[Span | None, str]] = (),
    ) -> None:
        labels = [Label(span=s, message=t) for s, t in secondary if s is not None]
        self.diagnostics.append(
            make(code, message, span, label=label, help=help, notes=notes, secondary=labels)
        )

    def solve(
        self,
        *formulas: F,
        subject: tuple[str, Span | None],
        prefer: tuple[F, ...] = (),
        tracked: tuple[tuple[Any, F], ...] = (),
    ) -> Outcome:
        """One solver query; `unknown` becomes an A0199 info on `subject` (once)."""
        out = self.encoder.solve(*formulas, prefer=prefer, tracked=tracked)
        if out.status == "unknown":
            what, span = subject
            key = (what, span)
            if key not in self._unknown:
                self._unknown.add(key)
                self.report(
                    "A0199",
                    f"analysis of {what} is inconclusive: the solver gave up",
                    span,
                    label="not proven either way",
                    notes=(
                        f"solver: {out.reason or 'unknown'} "
                        f"(limit {self.options.timeout_ms} ms per query)",
                    ),
                    help="simplify the condition, or raise the limit with "
                    "`MCPDSL_ANALYSIS_TIMEOUT_MS`",
                )
        return out

    def unconfirmed_witness(self, what: str, witness: dict[str, Any] | None) -> None:
        from mcpdsl.analysis.witness import to_json

        self.unconfirmed.append(f"{what}: {to_json(witness or {})}")


#: A time-zone name as the tz database spells them; anything else is not looked up.
_ZONE_NAME = r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*"


def inputs(project: m.Project) -> tuple[tuple[str, bytes | None], ...] | None:
    """Everything outside the IR and the sources that the analyses read, as bytes.

    The analyses are pure functions of the project, its source texts and their
    options, except for these files: the `intensity from` forecast of a carbon
    block that has a budget or a renewable minimum (read by `carbon`, through
    the same `in_tree` rule and safe reader), and the tz database entry of every
    `during` window's zone (`scaling` decides overlaps with `zoneinfo`).  A
    result cache keys on them (`mcpdsl.pipeline.disk_cache`); a file that cannot
    be read is recorded as None, which is what the analysis sees too.  None
    overall when an input cannot be pinned down (a zone name that is not a plain
    tz name): such a result must not be cached.  Whoever makes an analysis read
    another file adds it here (tests/analysis/test_inputs.py checks the files
    opened against this list).
    """
    import re
    from pathlib import Path

    found: list[tuple[str, bytes | None]] = []
    for c in project.carbons:
        if c.intensity_file is None or (c.budget is None and c.renewable_min is None):
            continue
        from mcpdsl.optimize.intensity import MAX_FILE_BYTES, in_tree
        from mcpdsl.reader import read_regular

        path = in_tree(Path(project.root or "."), c.intensity_file)
        data: bytes | None = None
        if path is not None:
            try:
                data = read_regular(path, MAX_FILE_BYTES)
            except OSError:
                data = None
        found.append((f"intensity:{c.intensity_file}:{path}", data))
    zones = sorted(
        {d.window.zone for s in project.scales for d in s.during if d.window.zone.upper() != "UTC"}
    )
    for zone in zones:
        if re.fullmatch(_ZONE_NAME, zone) is None or ".." in zone:
            return None
        found.append((f"zone:{zone}", _zone_bytes(zone)))
    return tuple(found)


def _zone_bytes(name: str) -> bytes | None:
    """The compiled tz file `zoneinfo.ZoneInfo(name)` would load, found as it finds it."""
    import zoneinfo
    from importlib import resources
    from pathlib import Path

    for base in zoneinfo.TZPATH:
        candidate = Path(base) / name
        try:
            if candidate.is_file():
                return candidate.read_bytes()
        except OSError:
            continue
    try:  # the `tzdata` package, zoneinfo's fallback
        package, _, leaf = f"tzdata.zoneinfo.{name.replace('/', '.')}".rpartition(".")
        return resources.files(package).joinpath(leaf).read_bytes()
    except (ImportError, OSError, ValueError):
        return None


def analyze(
    project: m.Project,
    sources: SourceMap | None = None,
    options: Options | None = None,
    only: Iterable[str] | None = None,
) -> Analysis:
    """Run every analysis that has something to look at; returns the context with findings."""
    import time

    if options is None:
        options = options_from_env()
    a = Analysis(project, sources, options)
    chosen = set(only) if only is not None else None
    for name in ANALYSES:
        if (chosen is not None and name not in chosen) or not WANTS[name](project):
            continue
        start = time.perf_counter()
        module = importlib.import_module(f"mcpdsl.analysis.{name}")
        getattr(module, name)(a)
        a.timings[name] = time.perf_counter() - start
    return a


__all__ = [
    "ANALYSES",
    "WANTS",
    "Analysis",
    "Options",
    "Tally",
    "WitnessCrash",
    "analyze",
    "inputs",
    "options_from_env",
]
