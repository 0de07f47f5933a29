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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcpdsl.diagnostics import Diagnostic, Label, make
from mcpdsl.ir import model as m
from mcpdsl.source import SourceMap, Span

if TYPE_CHECKING:
    from mcpdsl.analysis.encode import Encoder, F, Outcome
    from mcpdsl.analysis.witness import Confirmer

ANALYSES: tuple[str, ...] = ("rules", "routes", "scaling", "capacity", "carbon")

WANTS: dict[str, Callable[[m.Project], bool]] = {
    "rules": lambda p: any(x.rules or x.risk or x.requires for x in p.policies),
    "routes": lambda p: any(len(g.routes) > 1 for g in p.gateways),
    "scaling": lambda p: bool(p.scales),
    "capacity": lambda p: bool(p.pools),
    "carbon": lambda p: bool(p.carbons),
}


@dataclass
class Options:
    """Solver limits per query: wall clock (ms) and z3's deterministic resource limit."""

    timeout_ms: int = 2000
    rlimit: int = 20_000_000


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


def analyze(
    project: m.Project,
    sources: SourceMap | None = None,
    options: Options | None = None,
    only: Iterable[str] | None = None,
) -> Analysis:
    """Run every analysis that has something to look at; returns the context with findings."""
    import os
    import time

    if options is None:
        options = Options()
        env = os.environ.get("MCPDSL_ANALYSIS_TIMEOUT_MS")
        if env and env.isdigit():
            options.timeout_ms = int(env)
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


__all__ = ["ANALYSES", "WANTS", "Analysis", "Options", "analyze"]
